"""Output diversity, measured while training: a collapsed generator is told apart from one
that is not yet trained, and the user is told what to change.

Diversity is the per-pixel standard deviation across the 64 fixed sample latents, in pixel
units (0..1), averaged over the image; the same figure for 64 real images is its scale. A
generator that has collapsed gives (nearly) one image for every latent: its diversity falls
far below the real images'. An untrained one still varies with the latent, though its images
look like noise, so a low figure early on is only reported, not warned about.
"""

from __future__ import annotations

import torch

COLLAPSED_BELOW = 0.1  # diversity under this share of the real images' is collapse...
WARN_FROM_STEP = 200  # ...once the run is past its first steps (initial weights give little spread)


def spread(images: torch.Tensor) -> float:
    """Mean per-pixel std across a batch of images in [-1, 1], in 0..1 pixel units."""
    return float(images.float().std(dim=0).mean() / 2)


def collapse_warning(step: int, diversity: float, real_diversity: float, augmented: bool = False) -> str | None:
    """One paragraph of advice when the samples have collapsed, else None. A run whose D already sees
    augmented images can recover on its own (docs/quality.md: on 509 photos, dcgan with flip,translation
    was back to the photos' diversity by step 1,200), so it is told to watch before starting again."""
    if step < WARN_FROM_STEP or real_diversity <= 0 or diversity >= COLLAPSED_BELOW * real_diversity:
        return None
    found = (f"step {step}: the generator has likely collapsed: its samples vary {diversity:.3f} across latents "
             f"against {real_diversity:.3f} for real images ({diversity / real_diversity:.0%}). Look at the "
             "latest grid in samples/: one image repeated is collapse, noise or blank images mean it is still "
             "early. ")
    if augmented:
        return found + ("With --augment a run can recover within about a thousand steps: watch the diversity "
                        "figure; if it stays this low past step 1,000, train a new run with a lower --lr-g/--lr-d, "
                        "more images, or --arch resnet (R1/R2-regularised, slower on a CPU)")
    return found + ("For collapse, train a new run with --augment flip,translation (a small set), a lower "
                    "--lr-g/--lr-d, more images, or --arch resnet (R1/R2-regularised, slower on a CPU)")
