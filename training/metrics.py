"""Distances between two sets of feature vectors (N, D): pure numpy, no model inside.

- Fréchet distance between Gaussian fits (the FID formula);
- KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over subsets (Bińkowski et al. 2018);
- precision and recall of k-NN manifolds (Kynkäänniemi et al. 2019);
- density and coverage (Naeem et al. 2020).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # near-singular covariances (dead features) are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b).real
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root), 0.0))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 500,
                              seed: int = 0) -> float:
    """Mean unbiased MMD^2 over random subsets; near 0 for sets from one distribution. Both
    sets are scaled by the first set's RMS feature size, so x.y/D is of order 1 whatever the
    feature space's units (the cubic kernel is meant for that range)."""
    scale = np.sqrt(np.mean(np.sum(a * a, axis=1)) / a.shape[1]) or 1.0
    a, b = a / scale, b / scale
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(a), len(b))
    dim = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / dim + 1) ** 3, ((y @ y.T) / dim + 1) ** 3, ((x @ y.T) / dim + 1) ** 3
        off = size * (size - 1)
        total += (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean()
    return float(total / subsets)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    distances = _pairwise(x, x)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 is the point itself


def precision_recall_density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict:
    real, fake = real.astype(np.float32), fake.astype(np.float32)
    real_radius, fake_radius = _knn_radius(real, k), _knn_radius(fake, k)
    real_to_fake = _pairwise(real, fake)  # (N_real, N_fake)
    inside_real = real_to_fake < real_radius[:, None]  # fake j inside real i's ball
    inside_fake = real_to_fake < fake_radius[None, :]  # real i inside fake j's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float(inside_fake.any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float(inside_real.any(axis=1).mean()),
    }
