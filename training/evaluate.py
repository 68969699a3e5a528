"""`ganserve eval`: how far a generator is from its real data, next to the real-vs-real floor.

Features come from a small classifier trained on the real data itself (fixed seed, cached),
so the numbers mean something for any 1- or 3-channel data set, not only ImageNet-like
photos. Reported:
- Fréchet distance (FD) between Gaussian fits of real and generated features;
- class coverage: the share of classes the classifier finds among generated images, and the
  KL divergence of the real class histogram from the generated one;
- the same figures for two disjoint halves of the real data (the floor a perfect generator
  would reach with this many images).
For unlabelled data the features come from the same network, untrained with a fixed seed
(a documented fallback: FD still ranks models, coverage is not reported).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from .data import ImageDataset, cache_dir, load_dataset
from .errors import ConfigError
from .release import read_release

CLASSIFIER_STEPS = 600
FEATURES = 128


class FeatureNet(nn.Module):
    """Three convolutions, global average pooling: 128 features, then the class logits."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, FEATURES, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, 128)
        self.head = nn.Linear(FEATURES, max(num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


@dataclass
class FeatureSpace:
    net: FeatureNet
    trained: bool
    accuracy: float | None  # on a held-out tenth of the real data

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, 128), predicted class (N,)) in batches."""
        feats, preds = [], []
        for start in range(0, len(images), 512):
            h = self.net.body(images[start:start + 512])
            feats.append(h.numpy())
            preds.append(self.net.head(h).argmax(1).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(preds)


def feature_space(data: ImageDataset, seed: int = 0) -> FeatureSpace:
    """The classifier for this data, trained once with a fixed seed and cached on disk."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(data.images.numpy().tobytes() + (data.labels.numpy().tobytes() if data.labels is not None
                                                           else b"") + f"v1-{seed}".encode()).hexdigest()[:16]
    folder = cache_dir() / "eval-classifiers"
    weights, info = folder / f"{key}.safetensors", folder / f"{key}.json"
    torch.manual_seed(seed)
    net = FeatureNet(data.shape[0], data.num_classes).eval()
    if data.labels is None:
        return FeatureSpace(net, trained=False, accuracy=None)
    if weights.is_file() and info.is_file():
        net.load_state_dict(load_file(str(weights)), strict=True)
        return FeatureSpace(net, True, json.loads(info.read_text())["accuracy"])
    accuracy = _train_classifier(net, data, seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(weights))
    info.write_text(json.dumps({"accuracy": accuracy, "source": data.source}))
    return FeatureSpace(net, True, accuracy)


def _train_classifier(net: FeatureNet, data: ImageDataset, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    held, train = order[: len(data) // 10], order[len(data) // 10:]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(CLASSIFIER_STEPS):
        batch = train[torch.randint(len(train), (128,), generator=generator)]
        loss = nn.functional.cross_entropy(net(data.images[batch]), data.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        predictions = net(data.images[held]).argmax(1)
    return float((predictions == data.labels[held]).float().mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussian fits of two feature sets (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # near-singular covariances (dead features) are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b).real
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root), 0.0))


def class_figures(predicted: np.ndarray, real_labels: np.ndarray, num_classes: int) -> dict:
    real = np.bincount(real_labels, minlength=num_classes) / len(real_labels)
    seen = np.bincount(predicted, minlength=num_classes) / len(predicted)
    covered = int(np.sum(seen >= 0.25 / num_classes))  # a class holds at least a quarter of a fair share
    kl = float(np.sum(real * np.log((real + 1e-12) / (seen + 1e-12))))
    return {"classes_covered": covered, "num_classes": num_classes, "class_kl": round(kl, 4),
            "class_histogram": [round(float(x), 4) for x in seen]}


def evaluate(source: Path, data_spec: str | None = None, num_samples: int | None = None, seed: int = 0) -> dict:
    """Evaluate a run or release folder against real data (default: the data it was trained on)."""
    release = read_release(source)
    config = release.config
    spec = data_spec or config.get("dataset")
    data = load_dataset(spec, config.get("dataset_resolution"), config.get("dataset_channels"))
    spec_shape = (release.spec.channels, release.spec.resolution, release.spec.resolution)
    if data.shape != spec_shape:
        raise ConfigError(f"--data {spec!r} has images of shape {data.shape}; the model makes {spec_shape}")
    half = len(data) // 2
    count = min(num_samples or half, half)
    if count < 50:
        raise ConfigError(f"--num-samples: {count} images is too few for a Fréchet distance; use at least 50")
    space = feature_space(data, seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    real_a, real_b = data.images[order[:count]], data.images[order[half:half + count]]
    generated = generate_images(release, count, seed)
    feats_a, pred_a = space.features(real_a)
    feats_b, _ = space.features(real_b)
    feats_g, pred_g = space.features(generated)
    result = {
        "model": str(release.path), "data": spec, "num_images": count,
        "feature_space": "classifier trained on the real data" if space.trained else "untrained network (no labels)",
        "classifier_accuracy": space.accuracy,
        "fd": round(frechet_distance(feats_a, feats_g), 4),
        "fd_real_vs_real": round(frechet_distance(feats_a, feats_b), 4),
    }
    result["fd_ratio_to_floor"] = round(result["fd"] / max(result["fd_real_vs_real"], 1e-12), 2)
    if space.trained:
        labels = data.labels.numpy()
        result["generated"] = class_figures(pred_g, labels, data.num_classes)
        result["real_vs_real"] = class_figures(space.features(real_b)[1], labels, data.num_classes)
        result["real_reference"] = class_figures(pred_a, labels, data.num_classes)
    return result


@torch.no_grad()
def generate_images(release, count: int, seed: int) -> torch.Tensor:
    generator = release.build_generator()
    rng = torch.Generator().manual_seed(seed + 10_000)
    z = torch.randn(count, release.spec.latent_dim, generator=rng)
    labels = torch.randint(release.spec.num_classes, (count,), generator=rng) if release.spec.num_classes else None
    return torch.cat([generator(z[i:i + 512], labels[i:i + 512] if labels is not None else None)
                      for i in range(0, count, 512)])
