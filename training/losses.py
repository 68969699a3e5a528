"""GAN objectives on D's logits, and the gradient penalties."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "rpgan":  # relativistic pairing (Jolicoeur-Martineau 2019; R3GAN): real paired with fake
        return F.softplus(-(real_logits - fake_logits)).mean()
    if kind == "nonsat":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def generator_loss(kind: str, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """`real_logits` (detached reals): needed by the relativistic loss, ignored by the others."""
    if kind == "rpgan":
        return F.softplus(-(fake_logits - real_logits)).mean()
    if kind == "nonsat":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                     mix: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates.
    `mix` (N, 1, 1, 1) in [0, 1] comes from the caller so the loop controls every random draw."""
    x_hat = (mix * real + (1.0 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat, labels).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def zero_centred_penalty(discriminator, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """E ||grad D(x)||^2: R1 (Mescheder et al. 2018) on real images, R2 on generated ones; the
    caller scales it by gamma / 2."""
    images = images.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(images, labels).sum(), images, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()
