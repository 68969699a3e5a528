"""The quality gate a new version passes before it is served in place of the live one.

A version that loads is not yet a version worth serving: a generator can load, warm up and
match its own spot check while it draws one flat image, or NaN (which the uint8 cast turns
into black). So every candidate draws GATE_SEEDS and is held to three rules:

1. its images vary across the seeds: their spread (the per-pixel standard deviation across
   images, in 0..1 units, as training's diversity figure) is at least MIN_SPREAD;
2. they have not collapsed against the live version: spread at least MIN_SPREAD_SHARE of the
   live version's on the same seeds (skipped when nothing is live yet);
3. its discriminator, through the card's calibration, scores them as the export scored the
   generator's images: the median p_real lies within the card's reference band for generated
   images (5th to 95th percentile, recorded at export) widened by P_REAL_MARGIN. A calibration
   edited by hand, or a discriminator that is not the generator's, lands outside it. Skipped
   for models without a discriminator or cards without a reference (exported before it).

The figures of every rule go into /models, whichever way the verdict went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

GATE_SEEDS = tuple(range(64))
MIN_SPREAD = 0.002  # half a pixel level: below it, the images do not vary with the seed
MIN_SPREAD_SHARE = 0.5  # of the live version's spread
P_REAL_MARGIN = 0.15


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None  # the figure measured (None: skipped)
    rule: str  # what passing means, or why the check was skipped


@dataclass(frozen=True)
class Verdict:
    passed: bool
    spread: float  # this version's, for the next candidate to be held against
    checks: tuple[Check, ...]

    @property
    def reason(self) -> str | None:
        failed = [c for c in self.checks if not c.passed]
        return "; ".join(f"{c.name}: {c.rule}" for c in failed) or None

    def to_json(self) -> dict:
        return {"passed": self.passed, "spread": round(self.spread, 5), "seeds": len(GATE_SEEDS),
                "checks": [asdict(c) for c in self.checks]}


def spread(images: np.ndarray) -> float:
    """Per-pixel standard deviation across images (N, H, W, C) uint8, averaged, in 0..1 units."""
    return float((images.astype(np.float32) / 255.0).std(axis=0).mean())


def evaluate(engine, live_spread: float | None = None) -> Verdict:
    """Hold `engine` (a loaded, warmed Engine) to the rules above."""
    seeds = list(GATE_SEEDS)
    images = engine.generate(seeds)
    own = spread(images)
    if own < MIN_SPREAD and not images.any():
        why = "every pixel of every image is 0 (a generator whose output is NaN comes out black)"
    else:
        why = f"spread {own:.4f} across {len(seeds)} seeds, at least {MIN_SPREAD} needed"
    checks = [Check("varies", own >= MIN_SPREAD, round(own, 5),
                    why if own < MIN_SPREAD else f"spread {own:.4f} >= {MIN_SPREAD}")]
    if live_spread is None:
        checks.append(Check("not collapsed against live", True, None, "skipped: no live version to compare with"))
    else:
        floor = MIN_SPREAD_SHARE * live_spread
        checks.append(Check("not collapsed against live", own >= floor, round(own / max(live_spread, 1e-12), 4),
                            f"spread {own:.4f} against the live version's {live_spread:.4f}; at least "
                            f"{MIN_SPREAD_SHARE:.0%} of it needed"))
    checks.append(_scores_check(engine, images, seeds))
    return Verdict(all(c.passed for c in checks), own, tuple(checks))


def _scores_check(engine, images: np.ndarray, seeds: list[int]) -> Check:
    name = "D scores as at export"
    if engine.discriminator is None:
        return Check(name, True, None, "skipped: the model has no discriminator")
    reference = (engine.card.calibration or {}).get("reference", {}).get("generated")
    if not reference:
        return Check(name, True, None, "skipped: the card has no reference scores (exported by an earlier ganserve)")
    logits, p_real = engine.score(images, engine.default_labels(seeds))
    if not np.isfinite(logits).all():
        return Check(name, False, None, f"D's logits are not finite for {int((~np.isfinite(logits)).sum())} of "
                                        f"{len(logits)} images")
    median = float(np.median(p_real))
    low, high = reference["p05"] - P_REAL_MARGIN, reference["p95"] + P_REAL_MARGIN
    return Check(name, low <= median <= high, round(median, 4),
                 f"median p_real {median:.3f}; the card's generated images scored {reference['p05']:.3f} to "
                 f"{reference['p95']:.3f} (5th-95th percentile), so {low:.3f} to {high:.3f} is allowed")
