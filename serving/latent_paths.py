"""Latents beyond one-per-seed: candidates for discriminator rejection sampling, and
spherical interpolation between two seeds. Pure numpy, like latents.py.

    >>> candidate_latents([7], 16, candidates=4).shape     # (N * K, latent_dim)
    (4, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ServingError
from .latents import draw, latent

MAX_CANDIDATES = 64
MAX_FRAMES = 64


def candidates_for(keep_top: float, field: str = "keep_top") -> int:
    """keep_top = 1/K: each image is the best of K candidates by D's calibrated p(real)."""
    if not isinstance(keep_top, (int, float)) or not 1.0 / MAX_CANDIDATES <= keep_top <= 1.0:
        raise ServingError(f"{field}: {keep_top!r} is not allowed; use a fraction from 1/{MAX_CANDIDATES} to 1 "
                           "(0.25 keeps the best of 4 candidates per image)")
    return max(1, round(1.0 / keep_top))


def candidate_latent(seed: int, index: int, latent_dim: int, truncation: float | None) -> np.ndarray:
    """Candidate 0 is the seed's own latent (so keep_top=1 is plain generation); candidate j > 0
    comes from the stream seeded by (seed, j): still a function of the seed alone."""
    if index == 0:
        return latent(seed, latent_dim, truncation)
    return draw(np.random.Generator(np.random.PCG64([seed, index])), latent_dim, truncation)


def candidate_latents(seeds: Sequence[int], latent_dim: int, candidates: int,
                      truncation: float | None = None) -> np.ndarray:
    """(N * K, latent_dim): the K candidates of seed 0, then those of seed 1, ..."""
    return np.stack([candidate_latent(seed, j, latent_dim, truncation) for seed in seeds for j in range(candidates)])


def slerp(start: np.ndarray, end: np.ndarray, frames: int) -> np.ndarray:
    """(frames, D) points on the great circle from `start` to `end`, both included exactly."""
    if not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
        raise ServingError(f"frames: {frames!r} is not allowed; use 2 to {MAX_FRAMES}")
    a, b = start.astype(np.float64), end.astype(np.float64)
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    out = np.empty((frames, len(a)), dtype=np.float32)
    for i, t in enumerate(np.linspace(0.0, 1.0, frames)):
        if omega < 1e-6:  # (almost) the same direction: a straight line is the same path
            point = (1.0 - t) * a + t * b
        else:
            point = (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
        out[i] = point
    out[0], out[-1] = start, end  # exact endpoints: they equal the seeds' own images
    return out
