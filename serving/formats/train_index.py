"""The training images' index (`train_index.npz` in a model folder): what memorisation checks
compare generated images with (`ganserve audit`, /generate's `max_train_similarity`).

An image is indexed by its thumbnail: area-averaged to at most 16x16 per channel (kept as uint8,
so `ganserve audit` can show it); two images' similarity is the cosine of their centred
thumbnails (1: the same picture up to brightness and contrast). Thumbnails find copies that pixels would miss by a
few levels of JPEG or rounding, and they need no network: the serving side computes them in
NumPy (benchmarks/quality/memorisation.py measures them against D's features on copies).

Written by export from the run's training images (never its held-out ones), read by serving.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "train_index.npz"
SIDE = 16  # thumbnails' largest side
MAX_IMAGES = 100_000  # indexed at most; a larger set is indexed by its first MAX_IMAGES
CHUNK = 8192  # index rows per matrix product


def thumbnail_side(height: int) -> int:
    """The thumbnail's side for images of `height`: the image itself up to SIDE, else the largest
    divisor of it not above SIDE (area averaging over whole blocks)."""
    if height <= SIDE:
        return height
    return max(d for d in range(1, SIDE + 1) if height % d == 0)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, side, side, C): area averages over whole blocks, rounded."""
    count, height, width, channels = images.shape
    side = thumbnail_side(height)
    blocks = images.reshape(count, side, height // side, side, width // side, channels).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def directions(thumbs: np.ndarray) -> np.ndarray:
    """uint8 thumbnails (N, s, s, C) -> float32 (N, s * s * C), each row centred and of unit length."""
    vectors = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    vectors -= vectors.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-6)  # a flat image has no direction: similarity 0 to everything


@dataclass
class TrainIndex:
    thumbs: np.ndarray  # uint8 (N, s, s, C): the thumbnails of the training set's first N images, in order
    of: int  # images in the training set (more than N when it was larger than MAX_IMAGES)
    _vectors: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, thumbs=self.thumbs, of=np.int64(self.of))
        return buffer.getvalue()

    @classmethod
    def read(cls, path: Path) -> TrainIndex:
        with np.load(path, allow_pickle=False) as archive:
            return cls(archive["thumbs"], int(archive["of"]))

    @classmethod
    def of_images(cls, images: np.ndarray) -> TrainIndex:
        """The index of uint8 (N, H, W, C) training images."""
        return cls.of_batches((images[i:i + CHUNK] for i in range(0, len(images), CHUNK)), len(images))

    @classmethod
    def of_batches(cls, batches, total: int) -> TrainIndex:
        """The index of training images given as uint8 batches, in order (a large set is never
        held whole): the first of `total`."""
        return cls(np.concatenate([thumbnails(batch) for batch in batches]), total)

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = directions(self.thumbs)
        return self._vectors

    def nearest(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For uint8 (N, H, W, C) images: (cosine similarity to the closest training image's
        thumbnail, that image's row in the training set), each (N,)."""
        queries = directions(thumbnails(images))
        best = np.full(len(images), -np.inf, np.float32)
        where = np.zeros(len(images), np.int64)
        vectors = self.vectors
        for start in range(0, len(vectors), CHUNK):
            similarity = queries @ vectors[start:start + CHUNK].T  # (N, chunk)
            column = similarity.argmax(axis=1)
            value = similarity[np.arange(len(images)), column]
            closer = value > best
            best[closer], where[closer] = value[closer], start + column[closer]
        return np.clip(best, -1.0, 1.0), where
