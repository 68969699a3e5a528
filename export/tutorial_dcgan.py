"""The DCGAN of PyTorch's DCGAN tutorial and of pytorch/examples `dcgan/main.py`, rebuilt so
their saved state dicts load into it, and adapted to ganserve's graph contract.

Their G takes z as (N, nz, 1, 1) and ends in tanh; their D ends in a sigmoid. Both are one
`nn.Sequential` called `main`, so a state dict's keys are `main.<index>.<weight|bias|...>`.
At 64 px (theirs) G is ConvTranspose 4x4 to ngf*8 at 4 px, then three doublings halving the
width (ngf*4, *2, *1), then one to nc channels; D mirrors it. Other sizes (32, 128, ...) follow
the same rule: one layer per doubling from 4 px, widths halving towards ngf (G) and doubling
from ndf (D), as the tutorial's variants for other sizes do.

    >>> g = build_generator(TutorialSpec(nz=100, ngf=64, ndf=64, nc=3, image_size=64))
    >>> load_weights(g, state_dict, "netG.pth")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.errors import layout_mismatch

from .verify import ExportError


@dataclass(frozen=True)
class TutorialSpec:
    nz: int = 100  # latent size
    ngf: int = 64  # G's width at the last layer
    ndf: int = 64  # D's width at the first layer
    nc: int = 3  # image channels
    image_size: int = 64

    @property
    def doublings(self) -> int:
        """Upsampling layers after the 4 px one: log2(image_size / 4)."""
        return int(math.log2(self.image_size // 4))

    def check(self) -> None:
        for name in ("nz", "ngf", "ndf"):
            if getattr(self, name) < 1:
                raise ExportError(f"--{name}: {getattr(self, name)} is not allowed; use a positive integer")
        if self.nc not in (1, 3):
            raise ExportError(f"--nc: {self.nc} is not allowed; ganserve serves 1 (grey) or 3 (RGB) channels")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ExportError(f"--image-size: {self.image_size} is not allowed; the tutorial's DCGAN makes powers of "
                              "two from 8 (64 is the tutorial's)")


def build_generator(spec: TutorialSpec) -> TutorialGenerator:
    k = spec.doublings
    width = spec.ngf * 2 ** (k - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(spec.nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU(True)]  # (N, width, 4, 4)
    for _ in range(k - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                   nn.ReLU(True)]
        width //= 2
    layers += [nn.ConvTranspose2d(width, spec.nc, 4, 2, 1, bias=False), nn.Tanh()]  # (N, nc, size, size)
    return TutorialGenerator(nn.Sequential(*layers), spec.nz)


def build_discriminator(spec: TutorialSpec) -> TutorialDiscriminator:
    width = spec.ndf
    layers: list[nn.Module] = [nn.Conv2d(spec.nc, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for _ in range(spec.doublings - 1):
        layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                   nn.LeakyReLU(0.2, inplace=True)]
        width *= 2
    layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False), nn.Sigmoid()]  # (N, 1, 1, 1)
    return TutorialDiscriminator(nn.Sequential(*layers))


class TutorialGenerator(nn.Module):
    """z (N, nz) -> images (N, nc, size, size) in [-1, 1], called as ganserve's G is."""

    def __init__(self, main: nn.Sequential, nz: int):
        super().__init__()
        self.main, self.nz = main, nz

    def forward(self, z: torch.Tensor, labels=None, label_weights=None) -> torch.Tensor:
        return self.main(z.view(-1, self.nz, 1, 1))


class TutorialDiscriminator(nn.Module):
    """images (N, nc, size, size) in [-1, 1] -> logits (N,): the network without its final
    sigmoid, since ganserve's D contract returns logits and calibrates them itself."""

    def __init__(self, main: nn.Sequential):
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        return self.main[:-1](x).flatten()


def load_weights(net: nn.Module, state: dict, source: str) -> None:
    """Load a state dict saved from the tutorial's network (keys main.N.*, or module.main.N.*
    when saved from DataParallel) into `net` (built above). Weights that do not fit are
    refused in one line naming the layers."""
    try:
        net.load_state_dict(_as_saved_by_main(state), strict=True)
    except RuntimeError as error:
        detail = layout_mismatch(error)
        if detail is None:
            raise
        raise ExportError(f"{source}: the weights do not fit the DCGAN tutorial's network with these options "
                          f"({detail}); check --nz, --ngf/--ndf, --nc and --image-size") from None
    net.eval().requires_grad_(False)


def fits(net: nn.Module, state: dict) -> bool:
    """Whether `state` has exactly the layers and shapes of `net` (to find a checkpoint's entry)."""
    state, own = _as_saved_by_main(state), net.state_dict()
    return state.keys() == own.keys() and all(
        isinstance(state[k], torch.Tensor) and state[k].shape == own[k].shape for k in own)


def _as_saved_by_main(state: dict) -> dict:
    """Keys as the tutorial's own module saves them: main.N.*."""
    keys = {key: key.removeprefix("module.") for key in state}
    return {(key if key.startswith("main.") else f"main.{key}"): state[old] for old, key in keys.items()}
