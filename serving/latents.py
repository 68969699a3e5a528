"""Per-seed latents: image i is a pure function of (model, seed_i, label_i, truncation).

Each seed owns a numpy PCG64 stream, so an image never depends on the rest of its batch,
on the process that made it (HTTP or batch CLI) or on the device (CPU or GPU).

    >>> latents([7, 8], latent_dim=4).shape
    (2, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ServingError

MAX_SEED = 2**63 - 1
MIN_TRUNCATION, MAX_TRUNCATION = 0.1, 10.0


def check_seed(seed: int, field: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ServingError(f"{field}: {seed!r} is not allowed; seeds are integers from 0 to 2**63-1")
    return int(seed)


def check_truncation(truncation: float | None) -> float | None:
    if truncation is None:
        return None
    if not isinstance(truncation, (int, float)) or not MIN_TRUNCATION <= truncation <= MAX_TRUNCATION:
        raise ServingError(f"truncation: {truncation!r} is not allowed; use a number from {MIN_TRUNCATION} "
                           f"to {MAX_TRUNCATION} (smaller: more typical, less varied images) or leave it out")
    return float(truncation)


def latent(seed: int, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """One latent: standard normal from the seed's own stream; with truncation psi, every
    component beyond +-psi is redrawn from the same stream (a truncated normal)."""
    return draw(np.random.Generator(np.random.PCG64(seed)), latent_dim, truncation)


def draw(rng: np.random.Generator, latent_dim: int, truncation: float | None) -> np.ndarray:
    """Standard normal from `rng`; components beyond +-truncation are redrawn from the same rng."""
    z = rng.standard_normal(latent_dim, dtype=np.float32)
    if truncation is not None:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
            outside = np.abs(z) > truncation
    return z


def latents(seeds: Sequence[int], latent_dim: int, truncation: float | None = None) -> np.ndarray:
    out = np.empty((len(seeds), latent_dim), dtype=np.float32)  # (N, latent_dim)
    for row, seed in enumerate(seeds):
        out[row] = latent(seed, latent_dim, truncation)
    return out


def default_labels(seeds: Sequence[int], num_classes: int) -> np.ndarray:
    """Labels for a conditional model when none are given: seed modulo the class count, so the
    label, like the latent, follows from the seed alone."""
    return (np.asarray(seeds, dtype=np.uint64) % np.uint64(num_classes)).astype(np.int64)
