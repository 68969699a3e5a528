"""The networks, by name: `mlp` (the tutorial's fully connected GAN), `dcgan`, and `resnet`
(residual and normalisation-free, after R3GAN: training/resnet.py).

Both generators map z (N, latent_dim) [+ labels (N,), or label_weights (N, classes) to blend
class embeddings] to images (N, C, H, W) in [-1, 1];
both discriminators map images [+ labels] to one logit per image (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from . import resnet
from .errors import ConfigError


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild G and D from weights (it travels in release/config.json)."""

    arch: str
    latent_dim: int
    channels: int
    resolution: int
    num_classes: int = 0  # > 0 makes G and D class-conditional
    width: int = 64


def build_generator(spec: NetworkSpec) -> nn.Module:
    if spec.arch == "mlp":
        return MLPGenerator(spec)
    if spec.arch == "resnet":
        return resnet.ResNetGenerator(spec, ConditionalInput(spec.latent_dim, spec.num_classes),
                                      stage_sides(spec.resolution, spec.arch))
    return DCGANGenerator(spec)


def build_discriminator(spec: NetworkSpec, spectral_norm: bool = False) -> nn.Module:
    builders = {"mlp": MLPDiscriminator, "resnet": ResNetDiscriminator}
    net = builders.get(spec.arch, DCGANDiscriminator)(spec)
    if spectral_norm:
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _spectral_norm(module)
    return net


def build_encoder(spec: NetworkSpec, width: int) -> nn.Module:
    """E for projection (training/encoder.py): images -> latents, for any architecture's G."""
    return Encoder(spec, width)


def dcgan_stages(resolution: int, arch: str = "dcgan") -> tuple[int, int]:
    """(start side, number of 2x upsamplings): resolution = start * 2**ups, start in 4..7."""
    ups = 0
    side = resolution
    while side >= 8 and side % 2 == 0:
        side //= 2
        ups += 1
    if ups == 0 or not 4 <= side <= 7:
        raise ConfigError(f"--resolution {resolution} does not suit {arch}: it needs a side of "
                          "s * 2**k with s in 4..7 and k >= 1 (8, 10, 12, 14, 16, 24, 28, 32, 48, 56, 64, ...)")
    return side, ups


def stage_sides(resolution: int, arch: str) -> list[int]:
    """The side of every stage, smallest first: [s, 2s, ..., resolution]."""
    start, ups = dcgan_stages(resolution, arch)
    return [start << i for i in range(ups + 1)]


def _stage_channels(width: int, ups: int) -> list[int]:
    """Channels at each resolution stage, widest at the smallest side, capped at 8x width."""
    return [min(width * 2 ** (ups - i), width * 8) for i in range(ups + 1)]


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector. Used in G instead of BatchNorm so an image never
    depends on the rest of its batch (per-seed determinism, identical train/eval behaviour,
    and identical single-process and data-parallel updates)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * x rather than x.pow(2): the same values, and it exports as a Mul, which ONNX
        # Runtime runs faster than Pow (measured: +4% for the 64 px G).
        return x * torch.rsqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


def class_embedding(embed: nn.Embedding, labels: torch.Tensor | None,
                    label_weights: torch.Tensor | None) -> torch.Tensor:
    """One class's embedding per row, or with label_weights (N, classes) a blend of them (label interpolation)."""
    return label_weights @ embed.weight if label_weights is not None else embed(labels)


class ConditionalInput(nn.Module):
    """Appends a learned class embedding to z (a no-op for unconditional models)."""

    def __init__(self, latent_dim: int, num_classes: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.out_dim = latent_dim * (2 if num_classes else 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None,
                label_weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is None:
            return z
        return torch.cat([z, class_embedding(self.embed, labels, label_weights)], dim=1)  # (N, 2 * latent_dim)


class Projection(nn.Module):
    """Projection discriminator head (Miyato & Koyama 2018): logit = w.h + <embed(y), h>."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        logits = self.linear(h).squeeze(1)  # (N,)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h).sum(dim=1)
        return logits


class MLPGenerator(nn.Module):
    """The tutorial's generator: latent -> 128 -> 128 -> C*H*W, LeakyReLU, sigmoid output.
    The sigmoid's [0, 1] is mapped to [-1, 1], the package's image range."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.input = ConditionalInput(spec.latent_dim, spec.num_classes)
        pixels = spec.channels * spec.resolution * spec.resolution
        self.net = nn.Sequential(
            nn.Linear(self.input.out_dim, 128), nn.LeakyReLU(0.2),
            nn.Linear(128, 128), nn.LeakyReLU(0.2),
            nn.Linear(128, pixels), nn.Sigmoid())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                label_weights: torch.Tensor | None = None) -> torch.Tensor:
        s = self.spec
        images = self.net(self.input(z, labels, label_weights)) * 2.0 - 1.0
        return images.view(-1, s.channels, s.resolution, s.resolution)  # (N, C, H, W)


class MLPDiscriminator(nn.Module):
    """Mirror of the tutorial's generator: C*H*W -> 128 -> 128 -> 1 logit."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        pixels = spec.channels * spec.resolution * spec.resolution
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, 128), nn.LeakyReLU(0.2),
            nn.Linear(128, 128), nn.LeakyReLU(0.2))
        self.head = Projection(128, spec.num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(images), labels)


class ClassModulation(nn.Module):
    """A per-class gain and bias on a normalised feature map (conditional normalisation, as in
    SNGAN's and BigGAN's generators). Near the identity at the start: for a class embedding of
    unit variance, each channel's gain and bias move by about 0.1, so the label matters from the
    first step without drowning z."""

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.gain = nn.Linear(embed_dim, channels)
        self.bias = nn.Linear(embed_dim, channels)
        for layer in (self.gain, self.bias):
            nn.init.normal_(layer.weight, std=0.1 / embed_dim ** 0.5)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return h * (1 + self.gain(embedding))[:, :, None, None] + self.bias(embedding)[:, :, None, None]


class DCGANGenerator(nn.Module):
    """z -> linear to (C0, s, s) -> [transposed conv 4x4 stride 2, PixelNorm, ReLU] x k -> 3x3 conv -> tanh.

    Conditional models take the class through every PixelNorm (a per-class gain and bias), not
    through z: joined to z at the input, the class alone decided the image and G drew one digit
    per class whatever z was (docs/quality.md, "The learning rate and the batch")."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.start, ups = dcgan_stages(spec.resolution)
        chans = _stage_channels(spec.width, ups)
        self.embed = nn.Embedding(spec.num_classes, spec.latent_dim) if spec.num_classes else None
        self.project = nn.Linear(spec.latent_dim, chans[0] * self.start * self.start)
        blocks: list[nn.Module] = [PixelNorm(), nn.ReLU()]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), PixelNorm(), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.modulations = nn.ModuleList(ClassModulation(spec.latent_dim, c) for c in chans) \
            if spec.num_classes else None
        self.to_image = nn.Sequential(nn.Conv2d(chans[-1], spec.channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                label_weights: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, self.start, self.start)  # (N, C0, s, s)
        if self.embed is None:
            return self.to_image(self.body(h))  # (N, C, H, W)
        embedding = class_embedding(self.embed, labels, label_weights)  # (N, latent)
        modulations = iter(self.modulations)
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, PixelNorm):
                h = next(modulations)(h, embedding)
        return self.to_image(h)


class ResNetDiscriminator(nn.Module):
    """The residual body (training/resnet.py) with the projection head every D here ends in."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.body = resnet.ResNetDiscriminator(spec, stage_sides(spec.resolution, spec.arch))
        self.head = Projection(self.body.out_features, spec.num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(images), labels)  # (N,)


class DCGANDiscriminator(nn.Module):
    """3x3 conv -> [conv 4x4 stride 2, LeakyReLU] x k -> flatten -> projection head."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        start, ups = dcgan_stages(spec.resolution)
        chans = _stage_channels(spec.width, ups)[::-1]  # widest-resolution stage first
        layers: list[nn.Module] = [nn.Conv2d(spec.channels, chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        layers.append(nn.Flatten())  # (N, C0 * s * s)
        self.body = nn.Sequential(*layers)
        self.head = Projection(chans[-1] * start * start, spec.num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(images), labels)  # (N,)


class Encoder(nn.Module):
    """Images (N, C, H, W) in [-1, 1] -> latents (N, latent_dim), for projection: DCGAN's
    discriminator body (strided convolutions) at `width`, then one linear layer."""

    def __init__(self, spec: NetworkSpec, width: int):
        super().__init__()
        body = DCGANDiscriminator(NetworkSpec("dcgan", spec.latent_dim, spec.channels, spec.resolution, 0, width))
        self.width = width
        self.body = body.body
        self.head = nn.Linear(body.head.linear.in_features, spec.latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))  # (N, latent_dim)
