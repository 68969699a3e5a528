"""A feature space for unlabelled images, learnt from the real images themselves (SimCLR).

A network that has never been trained maps every image near one point (its ReLUs and pooling
average the differences away), so distances in its features say little: a folder of blurry
blobs came out 0.0008 from real faces against a floor of 0. Here a small encoder learns to
tell each real image from the others under the project's augmentations (flip, translation,
cutout): two views of one image must land closer to each other than to any other image in
the batch (NT-Xent, Chen et al. 2020). Its features must then describe what makes an image
itself (shape, colour, texture, detail), which is what a set of generated images is compared
on. Colour jitter and blur are left out of the views on purpose: the encoder must not learn to
ignore them, since washed-out colour and lost detail are what a weak generator produces.

Trained once per data set with a fixed seed (about a minute at 28 px, a few at 64 px, on one
core) and cached beside the classifiers `ganserve eval` trains for labelled data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment

FEATURES = 128
STEPS = 500
BATCH = 128  # images per step: 256 views
TEMPERATURE = 0.2
VIEW_POLICY = ("flip", "translation", "cutout")
WIDTHS = (32, 64, FEATURES)  # the stem's, then each stride-2 stage's (a stage past the third keeps 128)
SMALLEST_SIDE = 8  # stride-2 stages until the feature map is at most this small (and at least two)


class ContrastiveNet(nn.Module):
    """conv 3x3 -> [conv 4x4 stride 2, ReLU] until the map is at most 8 px -> mean over space:
    128 features (`body`, the evaluation's); `head` is SimCLR's projection, for training only.
    (Measured on 64 px faces: concatenating every stage's pooled features, or their spread as
    well as their mean, separated blur less well than this: benchmarks/quality/eval_validation.py.)"""

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, WIDTHS[0], 3, padding=1), nn.ReLU()]
        c_in, side, stage = WIDTHS[0], resolution, 1
        while side > SMALLEST_SIDE or stage < len(WIDTHS):
            c_out = WIDTHS[min(stage, len(WIDTHS) - 1)]
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]  # half the side
            c_in, side, stage = c_out, (side + 1) // 2, stage + 1
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (N, 128)
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.ReLU(), nn.Linear(FEATURES, 64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def nt_xent(projections: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's loss for 2N projections where rows i and i + N are views of one image."""
    z = F.normalize(projections, dim=1)
    similarity = z @ z.T / temperature  # (2N, 2N)
    similarity.fill_diagonal_(float("-inf"))  # an image's view is not its own negative
    n = len(z) // 2
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(similarity, positives)


def views(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Two augmented views of each image, stacked: (2N, C, H, W)."""
    pair = torch.cat([images, images])
    return augment(pair, VIEW_POLICY, rng, len(pair), slice(None))


def train_contrastive(net: ContrastiveNet, data, seed: int, steps: int = STEPS) -> float:
    """Train `net` in place on the real images; returns its instance accuracy on held-out
    images: the share whose second view is the nearest of all held-out views to its first."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    held, train = order[: max(len(data) // 10, 2)], order[max(len(data) // 10, 2):]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(steps):
        batch = train[torch.randint(len(train), (min(BATCH, len(train)),), generator=generator)]
        loss = nt_xent(net(views(data.batch(batch.numpy()), generator)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    return instance_accuracy(net, data.batch(held[:256].numpy()), generator)


@torch.no_grad()
def instance_accuracy(net: ContrastiveNet, images: torch.Tensor, rng: torch.Generator) -> float:
    features = F.normalize(net.body(views(images, rng)), dim=1)
    n = len(images)
    similarity = features[:n] @ features.T  # first views against every view
    similarity[torch.arange(n), torch.arange(n)] = float("-inf")
    return float((similarity.argmax(1) == torch.arange(n, 2 * n)).float().mean())
