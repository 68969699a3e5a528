"""Known degradations of a set of real images, to validate an evaluation's feature space: a
metric worth reading puts each farther from the real images than the real-vs-real floor, and
the stronger of two (blur x4 against blur x2) farther than the weaker.

Every function maps images (N, C, H, W) in [-1, 1] to images of the same shape and range.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from serving.formats.pixels import from_levels

from .samples import to_uint8


def blur(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Detail lost: averaged over factor x factor blocks, then stretched back (bilinear)."""
    small = F.avg_pool2d(images, factor, ceil_mode=True)
    return F.interpolate(small, size=images.shape[2:], mode="bilinear", align_corners=False)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Blocks and ringing: each image through a JPEG file of this quality."""
    out = []
    for picture in to_uint8(images):  # (H, W, C) uint8
        buffer = io.BytesIO()
        Image.fromarray(picture.squeeze(2) if picture.shape[2] == 1 else picture).save(buffer, "JPEG",
                                                                                          quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        out.append(decoded.reshape(picture.shape))
    return from_levels(torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float())


def repeated(images: torch.Tensor) -> torch.Tensor:
    """Total collapse: the first image, as many times as there are images."""
    return images[:1].expand_as(images).clone()


def noise(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Nothing learnt: uniform noise in the images' range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(images.shape, generator=generator) * 2.0 - 1.0


DEGRADATIONS = {
    "blur x2": lambda x: blur(x, 2),
    "blur x4": lambda x: blur(x, 4),
    "jpeg q20": lambda x: jpeg(x, 20),
    "one image repeated": repeated,
    "noise": noise,
}
# (milder, stronger): the stronger must be the farther from the real images
ORDERED_PAIRS = (("real vs real", "blur x2"), ("blur x2", "blur x4"), ("real vs real", "jpeg q20"),
                 ("real vs real", "one image repeated"), ("real vs real", "noise"))
