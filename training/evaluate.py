"""`ganserve eval`: how far a generator is from its real data, next to the real-vs-real floor.

Features come from a network trained on the real data itself (fixed seed, cached), so the
numbers mean something for any 1- or 3-channel data set, not only ImageNet-like photos:
- labelled data: a small classifier; its class predictions also give class coverage;
- unlabelled data (a folder of photos): a contrastive encoder (training/contrastive.py) that
  learnt to tell each real image from the others; `--features` picks either where both apply.
Reported:
- Fréchet distance (FD) between Gaussian fits of real and generated features, KID, and
  precision / recall / density / coverage of k-NN manifolds;
- for a classifier: the share of classes found among generated images, and the KL divergence
  of the real class histogram from the generated one;
- the same figures for two disjoint halves of the real data (the floor a perfect generator
  would reach with this many images).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from serving.formats.files import cache_dir
from serving.formats.model_card import ModelCard
from serving.formats.pixels import from_levels, to_levels
from serving.sampling.latents import label_array, latents

from . import contrastive
from .config import FEATURE_KINDS
from .data import ImageDataset, load_dataset
from .errors import ConfigError
from .inception import InceptionFeatures
from .metrics import frechet_distance, kernel_inception_distance, precision_recall_density_coverage
from .release import Release, read_release

log = logging.getLogger(__name__)
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
    body: nn.Module  # images (N, C, H, W) -> features (N, 128)
    classes: nn.Module | None  # features -> class logits: the classifier's head; None without labels
    accuracy: float | None  # held-out: the classifier's on classes, the encoder's on instances
    inception: InceptionFeatures | None = None  # --inception: FD etc. in its space instead

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(features (N, D), predicted class (N,) or None) in batches; D = 128, or Inception's own."""
        feats, preds = [], []
        for start in range(0, len(images), 512):
            h = self.body(images[start:start + 512])
            feats.append(h.numpy())
            if self.classes is not None:
                preds.append(self.classes(h).argmax(1).numpy())
        features = self.inception(images) if self.inception else np.concatenate(feats).astype(np.float64)
        return features, np.concatenate(preds) if preds else None  # classes come from the data's own classifier

    @property
    def kind(self) -> str:
        return "classifier" if self.classes is not None else "contrastive"

    def describe(self) -> str:
        if self.inception:
            return self.inception.describe()
        if self.classes is not None:
            return "classifier trained on the real data"
        return CONTRASTIVE_FEATURES


CONTRASTIVE_FEATURES = "contrastive encoder trained on the real images (no labels)"
MEANINGFUL_FLOOR = 1e-6  # a real-vs-real FD below this is 0 for the features, not a yardstick


def ratio_to_floor(fd: float, floor: float) -> float | None:
    """FD as a multiple of the real-vs-real floor; None where the floor is (near) zero, so no
    ratio is printed against a floor that is no yardstick."""
    return round(fd / floor, 2) if floor >= MEANINGFUL_FLOOR else None


def feature_space(data: ImageDataset, seed: int = 0, kind: str = "auto") -> FeatureSpace:
    """The feature network for this data, trained once with a fixed seed and cached on disk:
    its classifier where it has labels, else its contrastive encoder (`kind` chooses)."""
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"--features must be one of {', '.join(FEATURE_KINDS)}; got {kind!r}")
    if kind == "classifier" and data.labels is None:
        raise ConfigError(f"--features classifier needs labelled data, and --data {data.source!r} has none; "
                          "use --features contrastive (the default for unlabelled data)")
    if kind == "contrastive" or data.labels is None:
        return _encoder_space(data, seed)
    torch.manual_seed(seed)  # the initial weights: with the data, they fix the classifier
    net = FeatureNet(data.shape[0], data.num_classes)
    accuracy = _cached(net, data, f"v2-{seed}", "eval-classifiers", lambda: _train_classifier(net, data, seed),
                       f"training the evaluation classifier for %s (%d images, {CLASSIFIER_STEPS} steps)")
    return FeatureSpace(net.body, net.head, accuracy)


def _encoder_space(data: ImageDataset, seed: int) -> FeatureSpace:
    steps = contrastive.STEPS
    torch.manual_seed(seed)  # the initial weights: with the data, they fix the encoder
    net = contrastive.ContrastiveNet(data.shape[0], data.shape[1])
    accuracy = _cached(net, data, f"contrastive-v1-{seed}-{steps}", "eval-encoders",
                       lambda: contrastive.train_contrastive(net, data, seed, steps),
                       f"training the contrastive evaluation encoder for %s (%d images, {steps} steps)")
    return FeatureSpace(net.body, None, accuracy)


def _cached(net: nn.Module, data: ImageDataset, version: str, folder_name: str, fit, message: str) -> float:
    """Load net's weights for this data set from the cache, or fit them (`fit()` returns the
    held-out accuracy) and cache them: once per data set, version and seed."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(data.fingerprint() + version.encode()).hexdigest()[:16]
    folder = cache_dir() / folder_name
    weights, info = folder / f"{key}.safetensors", folder / f"{key}.json"
    if weights.is_file() and info.is_file():
        net.load_state_dict(load_file(str(weights)), strict=True)
        net.eval()
        return json.loads(info.read_text())["accuracy"]
    log.info(message + "; once per data set, cached in %s", data.source, len(data), folder)
    accuracy = fit()
    net.eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(weights))
    info.write_text(json.dumps({"accuracy": accuracy, "source": data.source}))
    return accuracy


def _train_classifier(net: FeatureNet, data: ImageDataset, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    held, train = order[: len(data) // 10], order[len(data) // 10:]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(CLASSIFIER_STEPS):
        batch = train[torch.randint(len(train), (128,), generator=generator)]
        loss = nn.functional.cross_entropy(net(data.batch(batch.numpy())), data.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        predictions = net(data.batch(held.numpy())).argmax(1)
    return float((predictions == data.labels[held]).float().mean())


def class_figures(predicted: np.ndarray, real_labels: np.ndarray, num_classes: int) -> dict:
    real = np.bincount(real_labels, minlength=num_classes) / len(real_labels)
    seen = np.bincount(predicted, minlength=num_classes) / len(predicted)
    covered = int(np.sum(seen >= 0.25 / num_classes))  # a class holds at least a quarter of a fair share
    kl = float(np.sum(real * np.log((real + 1e-12) / (seen + 1e-12))))
    return {"classes_covered": covered, "num_classes": num_classes, "class_kl": round(kl, 4),
            "class_histogram": [round(float(x), 4) for x in seen]}


class Comparison:
    """One definition of an evaluation, shared by `ganserve eval` and `train --eval-every`: the
    data set's own feature network (one per data set and kind, cached), `count` real images as
    the reference and `count` others as the real-vs-real floor, drawn by `seed`."""

    def __init__(self, data: ImageDataset, num_samples: int | None, seed: int = 0, inception=None,
                 features: str = "auto"):
        half = len(data) // 2
        self.count = min(num_samples or half, half)
        if self.count < 50:
            raise ConfigError(f"--num-samples: {self.count} images is too few to compare sets; use at least 50 "
                              f"(and a data set of at least 100 images; this one has {len(data)})")
        self.data, self.seed = data, seed
        self.space = feature_space(data, seed, features)
        self.space.inception = inception  # features from a user's Inception file instead, when given
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        self.real_a = data.batch(order[:self.count].numpy())
        self.real_b = data.batch(order[half:half + self.count].numpy())
        self.reference, _ = self.space.features(self.real_a)

    @property
    def generated_seeds(self) -> list[int]:
        """The seeds a generator is scored on: eval seed s takes s * 1,000,000 onwards, so seed 0
        scores the images `ganserve sample --seeds 0-N` writes."""
        start = self.seed * SEEDS_PER_EVAL_SEED
        return list(range(start, start + self.count))

    def generated_by(self, generator: nn.Module, latent_dim: int, num_classes: int) -> torch.Tensor:
        return generator_images(generator, latent_dim, num_classes, self.generated_seeds)

    def figures(self, images: torch.Tensor) -> dict:
        return _figures(self.reference, *self.space.features(images), self.data)


SEEDS_PER_EVAL_SEED = 1_000_000


@torch.no_grad()
def generator_images(generator: nn.Module, latent_dim: int, num_classes: int, seeds: list[int]) -> torch.Tensor:
    """A PyTorch G's images for these seeds as its exported model draws them: the serving seed
    contract's latents and default labels (serving/sampling/latents.py), rounded to uint8 levels.
    So a run, its release and its exported model are scored on the same images."""
    z = torch.from_numpy(latents(seeds, latent_dim))  # (N, latent_dim)
    labels = label_array(seeds, None, num_classes)
    device = next(generator.parameters()).device
    batches = []
    for start in range(0, len(seeds), 512):
        batch_labels = None if labels is None else torch.from_numpy(labels[start:start + 512]).to(device)
        batches.append(generator(z[start:start + 512].to(device), batch_labels).float().cpu())
    return from_levels(to_levels(torch.cat(batches)))  # (N, C, H, W), on the 256 levels a PNG holds


def model_folder_images(folder: Path, seeds: list[int]) -> torch.Tensor:
    """An exported model's images for these seeds, made by the serving engine exactly as
    `ganserve sample` makes them (the seed contract of docs/DESIGN.md)."""
    from serving.engine import Engine

    images = Engine(folder, device="cpu", warmup=False).generate(seeds)  # (N, H, W, C) uint8
    return from_levels(torch.from_numpy(images).permute(0, 3, 1, 2).float())


@dataclass
class Subject:
    """What `ganserve eval` scores, and how its images are made once the comparison is drawn."""

    name: str
    data_spec: str  # the real data it is compared with
    shape: tuple[int, int, int]  # (C, H, W) of its images, which the real data is brought to
    images: Callable[[Comparison], torch.Tensor]
    count: int | None = None  # images per set when --num-samples is not given (None: half the real data)
    release: Release | None = None  # a run's or release's, for --report


def subject_of(source: Path | None, data_spec: str | None, samples: str | None) -> Subject:
    """A run or release folder (its G, in PyTorch), an exported model folder (the serving
    engine), or a set of images (`samples`: any --data spec, with `data_spec`)."""
    if source is not None and (Path(source) / "model.json").is_file():
        card = ModelCard.read(source)
        spec = data_spec or card.source.get("dataset")
        if spec is None:
            raise ConfigError(f"{source}: its model.json does not say what data it was trained on; pass --data SPEC")
        return Subject(str(source), spec, (card.channels, card.height, card.width),
                       lambda comparison: model_folder_images(Path(source), comparison.generated_seeds))
    if source is not None:
        release = read_release(source)
        spec = release.spec
        return Subject(str(release.path), data_spec or release.metadata.dataset,
                       (spec.channels, spec.resolution, spec.resolution),
                       lambda comparison: comparison.generated_by(release.build_generator(), spec.latent_dim,
                                                                  spec.num_classes),
                       count=release.metadata.eval_samples, release=release)  # the count --eval-every used
    if samples is None or data_spec is None:
        raise ConfigError("eval needs a run folder, a model folder, or --samples SPEC together with --data SPEC")
    images = load_dataset(samples).images
    return Subject(samples, data_spec, tuple(images.shape[1:]), lambda comparison: images[:comparison.count],
                   count=len(images))


def evaluate(source: Path | None = None, data_spec: str | None = None, num_samples: int | None = None,
             seed: int = 0, samples: str | None = None, report: Path | None = None,
             inception: Path | None = None, features: str = "auto") -> dict:
    """The figures of a run, release or model folder, or of a set of samples, against real data
    (default: the data it was trained on), beside the real-vs-real floor. `seed` draws the real
    halves and the generated seeds (0: seeds 0..N-1, as `ganserve sample` writes them).
    `inception`: an Inception-v3 ONNX file whose features replace the data's own network (the
    standard FID). `features`: auto (the classifier for labelled data, else the contrastive
    encoder), classifier or contrastive."""
    inception_features = InceptionFeatures(inception) if inception is not None else None  # fail early
    subject = subject_of(source, data_spec, samples)
    channels, resolution, _ = subject.shape
    data = load_dataset(subject.data_spec, resolution, channels)
    if data.shape != subject.shape:
        raise ConfigError(f"--data {subject.data_spec!r} has images of shape {data.shape}; the samples are "
                          f"{subject.shape}")
    wanted = num_samples or subject.count
    if samples is not None:
        wanted = min(wanted, subject.count)  # no more than the samples hold
    comparison = Comparison(data, wanted, seed, inception_features, features)
    result = {"model": subject.name, "data": subject.data_spec, "num_images": comparison.count,
              **figures_against(comparison, subject.images(comparison))}
    if report is not None:
        if subject.release is None:
            raise ConfigError("--report needs a run folder (it plots the run's losses and samples its G)")
        from .report import write_report

        result["report"] = str(write_report(report, subject.release, result, comparison.space, comparison.real_a,
                                            comparison.real_b, seed))
    return result


def figures_against(comparison: Comparison, images: torch.Tensor) -> dict:
    """The figures of these images and of the real-vs-real floor, in the comparison's features."""
    space = comparison.space
    generated, floor = comparison.figures(images[:comparison.count]), comparison.figures(comparison.real_b)
    return {"feature_space": space.describe(),
            "classifier_accuracy": space.accuracy if space.kind == "classifier" else None,
            "encoder_instance_accuracy": space.accuracy if space.kind == "contrastive" else None,
            "generated": generated, "real_vs_real": floor,
            "fd_ratio_to_floor": ratio_to_floor(generated["fd"], floor["fd"])}


def _figures(reference: np.ndarray, features: np.ndarray, predicted: np.ndarray | None,
             data: ImageDataset) -> dict:
    figures = {"fd": round(frechet_distance(reference, features), 4),
               "kid": round(kernel_inception_distance(reference, features), 5),
               **{k: round(v, 4) for k, v in precision_recall_density_coverage(reference, features).items()}}
    if predicted is not None:
        figures.update(class_figures(predicted, data.labels.numpy(), data.num_classes))
    return figures


class RunEvaluator:
    """Evaluation during training (`--eval-every`): `ganserve eval`'s Comparison on the run's
    whole data set with its default seed, so a step's logged figures are what `ganserve eval`
    prints for its release, and (within the export's 1-level parity) for its exported model."""

    def __init__(self, data: ImageDataset, count: int, seed: int = 0):
        self.comparison = Comparison(data, count, seed)

    @torch.no_grad()
    def __call__(self, generator: nn.Module, latent_dim: int, num_classes: int) -> dict:
        figures = self.comparison.figures(self.comparison.generated_by(generator, latent_dim, num_classes))
        figures.pop("class_histogram", None)
        return figures
