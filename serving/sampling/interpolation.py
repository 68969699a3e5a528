"""Paths between two seeds: spherical interpolation of their latents, and for conditional
models a linear blend of class embeddings (the generator_blend graph's `label_weights`)."""

from __future__ import annotations

import numpy as np


def slerp(start: np.ndarray, end: np.ndarray, frames: int) -> np.ndarray:
    """(frames, D) points on the great circle from `start` to `end`, both included exactly."""
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


def class_blend(first: int, last: int, num_classes: int, frames: int) -> np.ndarray:
    """(frames, classes) weights from one-hot `first` to one-hot `last`, linearly."""
    one_hot = np.eye(num_classes, dtype=np.float32)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None]
    return (1.0 - t) * one_hot[first] + t * one_hot[last]
