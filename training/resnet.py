"""`--arch resnet`: a residual, normalisation-free G and D after R3GAN (Huang et al., "The GAN
is dead; long live the GAN! A Modern GAN Baseline", NeurIPS 2024), at this project's scale.

- Stages at sides s, 2s, ..., resolution (s in 4..7, so 28 px works); each holds
  RESNET_BLOCKS inverted-bottleneck blocks: 1x1 expand x2, biased leaky ReLU, grouped 3x3
  (GROUP_CHANNELS channels per group), biased leaky ReLU, 1x1 back, added to the input.
- No normalisation layers. Instead a fix-up style initialisation: weights drawn with std
  gain / sqrt(fan_in), the blocks' gain scaled by (number of blocks)^(-1/4) so the residual
  sum keeps its variance with depth, and each block's last convolution zero, so every block
  starts as the identity.
- Bilinear resampling between stages (G: bilinear x2 upsampling; D: the [1, 3, 3, 1] filter,
  stride 2). G starts from a learned constant basis (C, s, s) scaled per channel by a linear
  map of z; D ends with a depthwise s x s basis and a linear map to its features.
- Conditional: a class embedding appended to z in G, a projection head in D (networks.py).
- G's output is linear (no tanh): the exported graph clamps it into uint8 (export/graphs.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RESNET_BLOCKS = 2  # blocks per stage
EXPANSION = 2  # channels inside a block, as a multiple of the stage's
GROUP_CHANNELS = 16  # channels per group of the 3x3 convolution (R3GAN's cardinality)
SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + SLOPE**2))  # keeps the variance of a leaky ReLU's output


def stage_widths(sides: list[int], width: int) -> list[int]:
    """Channels per stage: `width` up to 32 px, then halved per doubling of the side (the
    large stages hold few channels, as in R3GAN's 256 px network), never below 16."""
    return [width if side <= 32 else max(16, width * 32 // side) for side in sides]


def _init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


class BiasedLeakyReLU(nn.Module):
    """A learned per-channel bias, then a leaky ReLU (the convolutions have no bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), SLOPE)


class Block(nn.Module):
    """x + conv1x1(act(conv3x3_grouped(act(conv1x1(x))))), the last convolution zero."""

    def __init__(self, channels: int, total_blocks: int):
        super().__init__()
        inner = channels * EXPANSION
        gain = ACTIVATION_GAIN * total_blocks ** (-1 / 4)  # (2 * 3 layers - 2) = 4: R3GAN's scaling
        self.expand = _init(nn.Conv2d(channels, inner, 1, bias=False), gain)
        self.mix = _init(nn.Conv2d(inner, inner, 3, padding=1, groups=max(1, inner // GROUP_CHANNELS), bias=False),
                         gain)
        self.project = nn.Conv2d(inner, channels, 1, bias=False)
        nn.init.zeros_(self.project.weight)  # every block starts as the identity
        self.act1, self.act2 = BiasedLeakyReLU(inner), BiasedLeakyReLU(inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.act2(self.mix(self.act1(self.expand(x)))))


class Downsample(nn.Module):
    """Bilinear downsampling by 2: the [1, 3, 3, 1] filter (outer product, normalised), stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps) / taps.sum() ** 2
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, stride=2, padding=1, groups=x.shape[1])


class ResNetGenerator(nn.Module):
    """z (N, latent) [+ labels] -> constant basis (C0, s, s) -> [blocks, bilinear x2, 1x1] ... ->
    1x1 to the image channels, linear output."""

    def __init__(self, spec, conditional_input: nn.Module, sides: list[int]):
        super().__init__()
        self.spec, self.input, self.start = spec, conditional_input, sides[0]
        widths = stage_widths(sides, spec.width)
        total = RESNET_BLOCKS * len(sides)
        self.basis = nn.Parameter(torch.randn(widths[0], sides[0], sides[0]))
        self.scale = _init(nn.Linear(self.input.out_dim, widths[0], bias=False))
        self.stages = nn.ModuleList()
        for index, channels in enumerate(widths):
            layers: list[nn.Module] = []
            if index:  # a new stage: maybe fewer channels (changed first: fewer to upsample), twice the side
                if widths[index - 1] != channels:
                    layers.append(_init(nn.Conv2d(widths[index - 1], channels, 1, bias=False)))
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers += [Block(channels, total) for _ in range(RESNET_BLOCKS)]
            self.stages.append(nn.Sequential(*layers))
        self.to_image = _init(nn.Conv2d(widths[-1], spec.channels, 1, bias=False))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                label_weights: torch.Tensor | None = None) -> torch.Tensor:
        scale = self.scale(self.input(z, labels, label_weights))  # (N, C0)
        h = self.basis.unsqueeze(0) * scale[:, :, None, None]  # (N, C0, s, s)
        for stage in self.stages:
            h = stage(h)
        return self.to_image(h)  # (N, C, H, W), linear


class ResNetDiscriminator(nn.Module):
    """images -> 1x1 from the image channels -> [blocks, 1x1, bilinear /2] ... -> blocks ->
    depthwise s x s basis -> features (N, C0) for the projection head."""

    def __init__(self, spec, sides: list[int]):
        super().__init__()
        widths = stage_widths(sides, spec.width)[::-1]  # largest side first
        side = sides[0]
        total = RESNET_BLOCKS * len(sides)
        self.from_image = _init(nn.Conv2d(spec.channels, widths[0], 1, bias=False))
        stages: list[nn.Module] = []
        for index, channels in enumerate(widths):
            layers: list[nn.Module] = [Block(channels, total) for _ in range(RESNET_BLOCKS)]
            if index + 1 < len(widths):  # to the next stage: half the side (first: fewer channels to filter)
                layers.append(Downsample(channels))
                if widths[index + 1] != channels:
                    layers.append(_init(nn.Conv2d(channels, widths[index + 1], 1, bias=False)))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.basis = _init(nn.Conv2d(widths[-1], widths[-1], side, groups=widths[-1], bias=False))
        self.features = _init(nn.Linear(widths[-1], widths[-1], bias=False))
        self.out_features = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.from_image(images))  # (N, C0, s, s)
        return self.features(self.basis(h).flatten(1))  # (N, C0)
