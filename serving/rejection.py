"""Discriminator rejection sampling (Azadi et al. 2019), deterministic per seed.

For seed s, candidates j = 0, 1, 2, ... come from the seed's own streams (candidate 0 is the
seed's plain latent). Candidate j is accepted when u_{s,j} < sigmoid(F(x)), with

    F(x) = D(x) - D_max - log(1 - exp(D(x) - D_max - eps)) - gamma

(D: the discriminator's logit; D_max: its largest logit on a fixed burn-in set of generated
images; u_{s,j}: a uniform number from the stream seeded by (s, j, 1)). gamma is solved on the
burn-in set so that the mean acceptance probability equals the requested rate. The first
accepted candidate is returned; after `max_candidates` without one, the candidate D rates
highest is. An image therefore depends only on its seed, label,
truncation, rate and cap — never on the rest of the batch — and a request always gets as
many images as it asked for.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ServingError
from .latent_paths import MAX_CANDIDATES, candidate_latent

EPSILON = 1e-6
BURN_IN_SEED = 2**62  # burn-in latents use seeds from here, far from everyday seeds
BURN_IN_COUNT = 1000
MIN_RATE = 1.0 / MAX_CANDIDATES


def check_rejection(rate: float, max_candidates: int, field: str = "drs_accept") -> None:
    if not isinstance(rate, (int, float)) or not MIN_RATE <= rate <= 1.0:
        raise ServingError(f"{field}: {rate!r} is not allowed; use an acceptance rate from {MIN_RATE:g} to 1")
    if not isinstance(max_candidates, int) or not 1 <= max_candidates <= MAX_CANDIDATES:
        raise ServingError(f"max_candidates: {max_candidates!r} is not allowed; use 1 to {MAX_CANDIDATES}")


@dataclass(frozen=True)
class AcceptanceRule:
    max_logit: float
    gamma: float

    def probability(self, logits: np.ndarray) -> np.ndarray:
        d = np.minimum(logits.astype(np.float64), self.max_logit) - self.max_logit  # <= 0
        f = d - np.log1p(-np.exp(d - EPSILON)) - self.gamma
        return 0.5 * (1.0 + np.tanh(0.5 * f))  # sigmoid(f), without overflow for large |f|

    @classmethod
    def fit(cls, burn_in_logits: np.ndarray, rate: float) -> AcceptanceRule:
        """gamma such that the mean acceptance probability on the burn-in set is `rate`."""
        max_logit = float(burn_in_logits.max())
        low, high = -60.0, 60.0  # mean probability falls as gamma grows
        for _ in range(80):
            middle = (low + high) / 2
            if cls(max_logit, middle).probability(burn_in_logits).mean() > rate:
                low = middle
            else:
                high = middle
        return cls(max_logit, (low + high) / 2)


def uniform(seed: int, index: int) -> float:
    return float(np.random.Generator(np.random.PCG64([seed, index, 1])).random())


@dataclass
class RejectionResult:
    images: np.ndarray
    candidates_drawn: int
    accepted: int  # images whose candidate passed the test (the rest: best of max_candidates)

    def stats(self) -> dict:
        count = len(self.images)
        return {"candidates_drawn": self.candidates_drawn, "acceptance_rate": round(count / self.candidates_drawn, 4),
                "accepted_by_test": self.accepted, "fallback_best_of_cap": count - self.accepted}


async def rejection_sample(seeds: Sequence[int], labels: np.ndarray | None, truncation: float | None,
                           rule: AcceptanceRule, rate: float, max_candidates: int, latent_dim: int,
                           generate: Callable[[dict], Awaitable[np.ndarray]],
                           score: Callable[[dict], Awaitable[np.ndarray]]) -> RejectionResult:
    """Rounds of 1/rate candidates for every seed still pending, until all are accepted or the
    cap is reached. `generate` and `score` run the graphs (directly, or through a batcher)."""
    count = len(seeds)
    chosen: list[np.ndarray | None] = [None] * count
    best: list[tuple[float, np.ndarray | None]] = [(-np.inf, None)] * count  # (logit, image)
    pending, start, drawn, accepted = list(range(count)), 0, 0, 0
    per_round = max(1, math.ceil(1.0 / rate))
    while pending and start < max_candidates:
        k = min(per_round, max_candidates - start)
        feeds = {"z": np.stack([candidate_latent(seeds[i], j, latent_dim, truncation)
                                for i in pending for j in range(start, start + k)])}
        if labels is not None:
            feeds["labels"] = np.repeat(labels[pending], k)
        images = await generate(feeds)
        logits = await score({"images": images, **({"labels": feeds["labels"]} if labels is not None else {})})
        logits = logits.reshape(len(pending), k)
        probabilities = rule.probability(logits)
        images = images.reshape(len(pending), k, *images.shape[1:])
        drawn += len(pending) * k
        still = []
        for row, i in enumerate(pending):
            for column in range(k):
                if uniform(seeds[i], start + column) < probabilities[row, column]:
                    chosen[i] = images[row, column]
                    accepted += 1
                    break
                if logits[row, column] > best[i][0]:
                    best[i] = (logits[row, column], images[row, column])
            if chosen[i] is None:
                still.append(i)
        pending, start = still, start + k
    for i in pending:
        chosen[i] = best[i][1]
    return RejectionResult(np.stack(chosen), drawn, accepted)
