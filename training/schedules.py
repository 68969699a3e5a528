"""R3GAN's schedules (`--schedules`) and the learning-rate decay: the optimiser's and the
loss's settings as functions of the step alone, so a resumed run takes exactly the values an
uninterrupted one would.

With --schedules each goes along a half cosine from its start to its end over the run
(`--steps`): Adam's beta2 from --beta2 to --beta2-final, the R1/R2 weights from
--r1-gamma/--r2-gamma to --gamma-final of that, and the EMA half-life and the augmentation
probability from 0 up to --ema-half-life and --augment-p. Without --schedules each stays at
its start (and the augmentation probability at --augment-p).

The learning rates hold --lr-g/--lr-d until --lr-decay-from of the run, then fall along a half
cosine to --lr-final at its end: unless --lr-decay-from says otherwise, over the whole run with
--schedules (R3GAN's), else from 60% of it for dcgan (docs/quality.md) and never for mlp and
resnet. The decay follows --steps, so extending a run with --resume re-times it.

    >>> at(config, step=0).lr_g, at(config, config.steps).lr_g
    (0.0002, 5e-05)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    lr_g: float
    lr_d: float
    beta2: float
    gamma_scale: float  # R1 and R2 weights, as a fraction of --r1-gamma / --r2-gamma
    ema_half_life_images: float | None  # None: --ema-decay instead
    augment_p: float


def cosine(step: int, steps: int, start: float, end: float) -> float:
    """Half a cosine from `start` (step 0) to `end` (the last step), flat after it."""
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def decay(step: int, steps: int, start: float, end: float, decay_from: float) -> float:
    """`start` until `decay_from` of the run, then half a cosine to `end` at its last step."""
    first = round(decay_from * steps)
    if step < first or first >= steps:
        return start
    return cosine(step - first, steps - first, start, end)


def at(config, step: int) -> Settings:
    """The settings for `step` of a resolved config (TrainConfig.resolved)."""
    n = config.steps
    half_life = config.ema_half_life * 1000 if config.ema_half_life else None
    lr_g = decay(step, n, config.lr_g, config.lr_final, config.lr_decay_from)
    lr_d = decay(step, n, config.lr_d, config.lr_final, config.lr_decay_from)
    if not config.schedules:
        return Settings(lr_g, lr_d, config.beta2, 1.0, half_life, config.augment_p)
    return Settings(lr_g=lr_g, lr_d=lr_d,
                    beta2=cosine(step, n, config.beta2, config.beta2_final),
                    gamma_scale=cosine(step, n, 1.0, config.gamma_final),
                    ema_half_life_images=cosine(step, n, 0.0, half_life) if half_life else None,
                    augment_p=cosine(step, n, 0.0, config.augment_p))


def table(config, points: int = 5) -> list[dict]:
    """The settings at evenly spaced steps, for --dry-run."""
    steps = sorted({round(config.steps * i / (points - 1)) for i in range(points)})
    return [{"step": step, **{k: round(v, 6) if isinstance(v, float) else v
                              for k, v in at(config, step).__dict__.items()}} for step in steps]
