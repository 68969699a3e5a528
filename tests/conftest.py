"""Shared helpers: tiny data files the tests write themselves (no downloads)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array in the IDX format (the MNIST files' format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """40 MNIST-format 28x28 images in two classes: bright squares (0) and dark (1)."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.integers(0, 60, (40, 28, 28)).astype(np.uint8)
    images[labels == 0, 8:20, 8:20] = 250
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", labels, compress=True)
    return folder
