"""Image grids as PNG (training samples, evaluation reports)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from serving.formats.pixels import to_levels


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, the same mapping the exported G uses."""
    return to_levels(images.detach().float().cpu()).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(images: torch.Tensor, columns: int | None = None) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, rows*(H+1)+1, columns*(W+1)+1) image, with
    1-pixel borders of the lowest value between tiles."""
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    filled = torch.full((rows * columns, channels, height + 1, width + 1), -1.0)
    filled[:count, :, 1:, 1:] = images.detach().float().cpu()
    tiled = filled.view(rows, columns, channels, height + 1, width + 1).permute(2, 0, 3, 1, 4)
    tiled = tiled.reshape(channels, rows * (height + 1), columns * (width + 1))
    return torch.nn.functional.pad(tiled, (0, 1, 0, 1), value=-1.0)


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None, min_width: int = 256) -> None:
    """Save a grid PNG, scaled up by whole pixels to at least `min_width` so small images stay visible."""
    from PIL import Image

    tiled = to_uint8(grid(images, columns)[None])[0]  # (H, W, C) uint8
    picture = Image.fromarray(tiled[:, :, 0] if tiled.shape[2] == 1 else tiled)
    scale = max(1, min_width // picture.width)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def release_images(release, count: int, seed: int, truncation: float | None = None) -> torch.Tensor:
    """(count, C, H, W) images from a release's G for latents drawn from `seed`."""
    spec = release.spec
    return generate_with(release.build_generator(), spec.latent_dim, spec.num_classes, count, seed, truncation)


@torch.no_grad()
def generate_with(generator, latent_dim: int, num_classes: int, count: int, seed: int,
                  truncation: float | None = None) -> torch.Tensor:
    """(count, C, H, W) images from `generator` (a module, on any device; images come back on
    the CPU) for latents drawn from `seed`; with `truncation`, latent components beyond
    +-truncation are redrawn. Conditional models get uniformly drawn labels."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, latent_dim, generator=rng)
    if truncation is not None:
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
            outside = z.abs() > truncation
    labels = torch.randint(num_classes, (count,), generator=rng) if num_classes else None
    device = next(generator.parameters()).device
    return torch.cat([generator(z[i:i + 512].to(device), labels[i:i + 512].to(device) if labels is not None else None)
                      .float().cpu() for i in range(0, count, 512)])
