"""Per-seed latents: image i is a pure function of (model, seed_i, label_i, truncation).

Each seed owns a numpy PCG64 stream, so an image never depends on the rest of its batch,
on the process that made it (HTTP or batch CLI) or on the device (CPU or GPU).

    >>> latents([7, 8], latent_dim=4).shape
    (2, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latent(seed: int, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """One latent: standard normal from the seed's own stream; with truncation psi, every
    component beyond +-psi is redrawn from the same stream (a truncated normal)."""
    return draw(np.random.Generator(np.random.PCG64(int(seed))), latent_dim, truncation)


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


def label_array(seeds: Sequence[int], labels: Sequence[int] | None, num_classes: int) -> np.ndarray | None:
    """int64 (N,) labels for G and D: the given ones, the seeds' defaults, or None (unconditional)."""
    if not num_classes:
        return None
    return default_labels(seeds, num_classes) if labels is None else np.asarray(labels, dtype=np.int64)


def generator_feeds(z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"z": z} if labels is None else {"z": z, "labels": labels}


def discriminator_feeds(images: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"images": images} if labels is None else {"images": images, "labels": labels}
