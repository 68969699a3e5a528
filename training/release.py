"""The release folder: what leaves training. G (EMA weights) and D as safetensors, the real
images export calibrates D on (calibration.npz: held-out images, so export needs nothing but
this folder), and config.json with everything needed to rebuild the networks and the sha256
of each file.

    >>> release = read_release(Path("runs/00000-dcgan-digits/release"))
    >>> generator = release.build_generator()
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from serving import __version__
from serving.formats.files import replace_folder, sha256_file

from .data import ImageDataset, load_dataset, split_holdout
from .errors import CheckpointError, DataError, layout_mismatch
from .networks import NetworkSpec, build_discriminator, build_encoder, build_generator
from .samples import to_uint8

FORMAT_VERSION = 1
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
CALIBRATION_FILE = "calibration.npz"
ENCODER_FILE = "encoder.safetensors"  # optional: E for projection, added by `ganserve train-encoder`
CONFIG_FILE = "config.json"
CALIBRATION_MAX_IMAGES = 2000  # as many as export calibrates on by default
CALIBRATION_MAX_BYTES = 64 << 20  # 64 MiB of pixels: 682 images at 256 px RGB


@dataclass(frozen=True)
class CalibrationSet:
    """Real images kept out of training, for export to fit D's calibration on."""

    images: np.ndarray  # uint8 (N, H, W, C), as the exported D takes them
    labels: np.ndarray | None  # int64 (N,) for conditional models
    split: str  # "held-out split", or "training data (no holdout)"

    @classmethod
    def from_dataset(cls, data, split: str, with_labels: bool) -> CalibrationSet:
        channels, height, width = data.shape
        count = min(len(data), CALIBRATION_MAX_IMAGES, max(1, CALIBRATION_MAX_BYTES // (channels * height * width)))
        labels = data.labels[:count].numpy().astype(np.int64) if with_labels else None
        return cls(to_uint8(data.batch(np.arange(count))), labels, split)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, images=self.images, **({"labels": self.labels} if self.labels is not None else {}))
        return buffer.getvalue()


@dataclass(frozen=True)
class ReleaseMetadata:
    """What a run tells its release about itself, beside the network spec and the files' hashes
    in config.json: written by write_release, read back and checked by read_release, so export
    and evaluation read typed fields, not a dict. Defaults are what releases made before a field
    existed meant."""

    dataset: str | None = None  # the --data spec the run trained on
    dataset_resolution: int | None = None  # --resolution and --channels it was loaded with
    dataset_channels: int | None = None
    holdout: float = 0.0  # the share held out of training, and the seed that split it
    seed: int = 0
    eval_samples: int | None = None  # images per --eval-every evaluation: `ganserve eval` uses as many
    step: int = 0
    class_names: list[str] | None = None
    training: dict = field(default_factory=dict)  # the run's hyper-parameters, for the record
    eval: dict | None = None  # release-best: the figures that made it the best
    # what config.json may hold for each field (None is always allowed: the default)
    TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "dataset": (str,), "dataset_resolution": (int,), "dataset_channels": (int,), "holdout": (int, float),
        "seed": (int,), "eval_samples": (int,), "step": (int,), "class_names": (list,), "training": (dict,),
        "eval": (dict,)}

    @classmethod
    def from_config(cls, config: dict, where: Path) -> ReleaseMetadata:
        values = {f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None}
        for name, value in values.items():
            allowed = cls.TYPES[name]
            if not isinstance(value, allowed) or isinstance(value, bool):
                names = " or ".join(t.__name__ for t in allowed)
                raise CheckpointError(f"{where}: {name} is {value!r}; expected {names}. The release was edited or "
                                      "damaged: write it again from the run (ganserve train --resume)")
        return cls(**values)



@dataclass
class Release:
    path: Path
    spec: NetworkSpec
    metadata: ReleaseMetadata
    files: dict[str, str]  # file name -> sha256, as config.json lists them
    calibration_split: str | None  # where calibration.npz's images came from; None: no such file
    generator_state: dict
    discriminator_state: dict
    encoder: dict | None = None  # config.json's record of E (width, the G it fits, figures); None: no E
    encoder_state: dict | None = None

    def calibration(self) -> CalibrationSet | None:
        """The held-out images saved with the release (None for releases made before they were)."""
        if self.calibration_split is None:
            return None
        with np.load(self.path / CALIBRATION_FILE, allow_pickle=False) as archive:
            labels = archive["labels"] if "labels" in archive.files else None
            return CalibrationSet(archive["images"], labels, self.calibration_split)

    def build_generator(self) -> nn.Module:
        return self._loaded(build_generator(self.spec), self.generator_state, GENERATOR_FILE)

    def build_discriminator(self) -> nn.Module:
        net = build_discriminator(self.spec, spectral_norm=False)  # weights were released normalised
        return self._loaded(net, self.discriminator_state, DISCRIMINATOR_FILE)

    def build_encoder(self) -> nn.Module | None:
        """E for projection, or None when the release has none (or one trained for another G)."""
        if self.encoder is None or self.encoder.get("generator_sha256") != self.files.get(GENERATOR_FILE):
            return None
        return self._loaded(build_encoder(self.spec, int(self.encoder["width"])), self.encoder_state, ENCODER_FILE)

    def _loaded(self, net: nn.Module, state: dict, file_name: str) -> nn.Module:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as error:  # weights of a version whose networks had other layers or shapes
            detail = layout_mismatch(error)
            if detail is None:
                raise
            raise CheckpointError(f"{self.path / file_name}: these weights do not fit the networks this version "
                                  f"of ganserve builds ({detail}); use the version that trained them, or train "
                                  "again") from None
        return net.eval().requires_grad_(False)


def training_images(release: Release, given: str | None, flag: str) -> tuple[ImageDataset, str]:
    """The images a release's G was trained on, at its size: those of `given` (a --data SPEC,
    whole) when given, else the run's own data without its held-out split; and the spec they
    came from. DataError, naming `flag`, when they cannot be loaded or do not fit the model."""
    spec, metadata = release.spec, release.metadata
    source = given or metadata.dataset
    if source is None:
        raise DataError(f"the release does not say which data it was trained on; pass {flag} SPEC")
    try:
        data = load_dataset(source, spec.resolution, spec.channels)
    except DataError as error:  # the loader names --data: say which option the spec came from
        message = str(error)
        raise DataError(flag + message[len("--data"):] if message.startswith("--data ") else message) from None
    if data.shape != (spec.channels, spec.resolution, spec.resolution):
        raise DataError(f"{flag} {source!r}: images of shape {data.shape}, the model draws "
                        f"{(spec.channels, spec.resolution, spec.resolution)}")
    if given is None:
        data, _ = split_holdout(data, metadata.holdout, metadata.seed)
    return data, source


def plain_weights(net: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with parametrizations (spectral norm) folded into the weights, so D loads
    without them. Evaluated in eval mode: spectral norm then uses its stored vectors as is."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        state = {k: v for k, v in net.state_dict().items() if ".parametrizations." not in k}
        for name, module in net.named_modules():
            if parametrize.is_parametrized(module):
                for tensor_name in module.parametrizations:
                    state[f"{name}.{tensor_name}" if name else tensor_name] = getattr(module, tensor_name)
    net.train(was_training)
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def write_release(release_dir: Path, generator: nn.Module, discriminator: nn.Module, spec: NetworkSpec,
                  metadata: ReleaseMetadata, calibration: CalibrationSet | None = None) -> Path:
    """Write the release into a sibling temp folder, then swap it in, so readers never see half."""
    from safetensors.torch import save_file

    staging = release_dir.with_name(release_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(plain_weights(generator), str(staging / GENERATOR_FILE))
    save_file(plain_weights(discriminator), str(staging / DISCRIMINATOR_FILE))
    names, extra = [GENERATOR_FILE, DISCRIMINATOR_FILE], {}
    if calibration is not None:
        (staging / CALIBRATION_FILE).write_bytes(calibration.to_bytes())
        names.append(CALIBRATION_FILE)
        extra["calibration"] = {"file": CALIBRATION_FILE, "split": calibration.split, "count": len(calibration.images)}
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        **asdict(spec),
        **asdict(metadata),
        **extra,
        "files": {name: sha256_file(staging / name) for name in names},
    }
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    replace_folder(staging, release_dir)
    return release_dir


def resolve_release_dir(path: Path) -> Path:
    """Accept a run folder or its release/ folder."""
    if (path / "release").is_dir():
        return path / "release"
    return path


def read_release(path: Path) -> Release:
    """Load and check a release folder. Raises CheckpointError naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    release_dir = resolve_release_dir(Path(path))
    config_path = release_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{release_dir}: no {CONFIG_FILE}; pass a run folder or its release/ folder")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path}: not valid JSON ({error}); the release is incomplete") from None
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format_version {version!r} is newer than this ganserve "
                              f"understands ({FORMAT_VERSION}); upgrade ganserve")
    expected = config.get("files", {})
    calibration = config.get("calibration")
    encoder = config.get("encoder")
    if encoder is not None and not (isinstance(encoder, dict) and isinstance(encoder.get("width"), int)):
        raise CheckpointError(f"{config_path}: encoder must be an object with an integer width; write it again "
                              "with ganserve train-encoder")
    weights = (GENERATOR_FILE, DISCRIMINATOR_FILE) + ((ENCODER_FILE,) if encoder else ())
    needed = set(weights) | ({CALIBRATION_FILE} if calibration else set())
    for name in sorted(needed | set(expected)):
        file = release_dir / name
        if Path(name).name != name or not file.is_file():
            raise CheckpointError(f"{release_dir}: {name} is missing; the release is incomplete")
        if expected.get(name) != sha256_file(file):
            raise CheckpointError(f"{file}: sha256 does not match {CONFIG_FILE}; the file is damaged or replaced")
    states = {}
    for name in weights:
        file = release_dir / name
        try:
            states[name] = load_file(str(file))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{file}: not a safetensors file ({error})") from None
    try:
        spec = NetworkSpec(**{k: config[k] for k in NetworkSpec.__dataclass_fields__})
    except KeyError as error:
        raise CheckpointError(f"{config_path}: missing field {error}") from None
    return Release(release_dir, spec, ReleaseMetadata.from_config(config, config_path), dict(expected),
                   calibration["split"] if calibration else None, states[GENERATOR_FILE], states[DISCRIMINATOR_FILE],
                   encoder, states.get(ENCODER_FILE))
