"""Image grids as PNG (training samples, evaluation reports)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, the same mapping the exported G uses."""
    scaled = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(images: np.ndarray, columns: int | None = None, padding: int = 1) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images into one (rows*H, columns*W, C) image."""
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                      dtype=np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top:top + height, left:left + width] = image
    return canvas


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None, min_width: int = 256) -> None:
    """Save a grid PNG, scaled up by whole pixels to at least `min_width` so small images stay visible."""
    from PIL import Image

    tiled = grid(to_uint8(images), columns)
    picture = Image.fromarray(tiled[:, :, 0] if tiled.shape[2] == 1 else tiled)
    scale = max(1, min_width // picture.width)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
