"""Candidates for discriminator-guided sampling: more latents per seed, still a function of
the seed alone. Candidate 0 is the seed's own latent, so one candidate is plain generation.

    >>> candidate_latents([7], 16, candidates=4).shape     # (N * K, latent_dim)
    (4, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .latents import draw, latent


def candidate_latent(seed: int, index: int, latent_dim: int, truncation: float | None) -> np.ndarray:
    """Candidate j > 0 comes from the stream seeded by (seed, j)."""
    if index == 0:
        return latent(seed, latent_dim, truncation)
    return draw(np.random.Generator(np.random.PCG64([int(seed), index])), latent_dim, truncation)


def candidate_latents(seeds: Sequence[int], latent_dim: int, candidates: int,
                      truncation: float | None = None, first: int = 0) -> np.ndarray:
    """(N * K, latent_dim): candidates first..first+K-1 of seed 0, then those of seed 1, ..."""
    return np.stack([candidate_latent(seed, j, latent_dim, truncation) for seed in seeds
                     for j in range(first, first + candidates)])
