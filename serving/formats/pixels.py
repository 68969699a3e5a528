"""The one mapping between the networks' image range [-1, 1] and uint8 pixel levels.

Written once for both array libraries: the functions use only arithmetic, `round` and `clip`,
which NumPy arrays and torch tensors share, so the exported graphs, training's sample grids,
the data loaders and evaluation all map pixels the same way. Rounding is half to even in both.

    >>> to_levels(np.array([-1.0, 0.0, 1.0]))
    array([  0., 128., 255.])
"""

from __future__ import annotations

PIXEL_SCALE = 127.5  # half of 255: [-1, 1] spans the 256 levels


def to_levels(images):
    """[-1, 1] -> float levels in [0, 255], rounded (the caller casts to uint8)."""
    return ((images + 1.0) * PIXEL_SCALE).round().clip(0.0, 255.0)


def from_levels(pixels):
    """uint8 levels (as a float array or tensor) -> [-1, 1]."""
    return pixels / PIXEL_SCALE - 1.0
