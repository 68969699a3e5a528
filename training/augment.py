"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for small data sets: the same
random flip, colour, translation and cutout applied to real and generated images before D, so
D cannot memorise the few real images and G still gets gradients through the augmentation.
With a probability p < 1 (--augment-p, ramped by --schedules as R3GAN ramps ADA's), each
augmentation is applied to an image with probability p.

Every random draw covers the global batch from the caller's generator; a process keeps its own
slice, so data-parallel runs augment exactly as a single process would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator, global_batch: int,
            mine: slice, p: float = 1.0) -> torch.Tensor:
    """x (n, C, H, W) in [-1, 1], this process's slice `mine` of a global batch."""
    for name in policy:
        if p <= 0.0:
            break
        changed = OPERATIONS[name](x, rng, global_batch, mine)
        if p >= 1.0:
            x = changed
        else:  # each image augmented with probability p
            chosen = _draw((global_batch, 1, 1, 1), rng, mine, x.device) < p
            x = torch.where(chosen, changed, x)
    return x


def _draw(shape: tuple[int, ...], rng: torch.Generator, mine: slice, device) -> torch.Tensor:
    return torch.rand(shape, generator=rng)[mine].to(device)


def _flip(x, rng, batch, mine):
    """Left-right mirror of half the images: the standard augmentation for photos."""
    mirrored = _draw((batch, 1, 1, 1), rng, mine, x.device) < 0.5
    return torch.where(mirrored, x.flip(3), x)


def _color(x, rng, batch, mine):
    brightness = _draw((batch, 1, 1, 1), rng, mine, x.device) - 0.5
    saturation = _draw((batch, 1, 1, 1), rng, mine, x.device) * 2.0
    contrast = _draw((batch, 1, 1, 1), rng, mine, x.device) + 0.5
    x = x + brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * saturation + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * contrast + mean


def _translation(x, rng, batch, mine, ratio: float = 0.125):
    n, _, height, width = x.shape
    shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    ty = (_draw((batch, 1, 1), rng, mine, x.device) * (2 * shift_h + 1)).long() - shift_h
    tx = (_draw((batch, 1, 1), rng, mine, x.device) * (2 * shift_w + 1)).long() - shift_w
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(height, device=x.device),
                                            torch.arange(width, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + ty + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + tx + 1, 0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=-1.0)  # shifted-in pixels are black, like the borders
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _cutout(x, rng, batch, mine, ratio: float = 0.5):
    n, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    oy = (_draw((batch, 1, 1), rng, mine, x.device) * (height + (1 - cut_h % 2))).long()
    ox = (_draw((batch, 1, 1), rng, mine, x.device) * (width + (1 - cut_w % 2))).long()
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(cut_h, device=x.device),
                                            torch.arange(cut_w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + oy - cut_h // 2, 0, height - 1)
    grid_x = torch.clamp(grid_x + ox - cut_w // 2, 0, width - 1)
    mask = torch.ones(n, height, width, dtype=x.dtype, device=x.device)
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


OPERATIONS = {"flip": _flip, "color": _color, "translation": _translation, "cutout": _cutout}
