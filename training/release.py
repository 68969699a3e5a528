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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from serving.formats.files import replace_folder, sha256_file

from . import __version__
from .errors import CheckpointError, layout_mismatch
from .networks import NetworkSpec, build_discriminator, build_generator
from .samples import to_uint8

FORMAT_VERSION = 1
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
CALIBRATION_FILE = "calibration.npz"
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


@dataclass
class Release:
    path: Path
    config: dict
    spec: NetworkSpec
    generator_state: dict
    discriminator_state: dict

    def calibration(self) -> CalibrationSet | None:
        """The held-out images saved with the release (None for releases made before they were)."""
        entry = self.config.get("calibration")
        if not entry:
            return None
        with np.load(self.path / CALIBRATION_FILE, allow_pickle=False) as archive:
            labels = archive["labels"] if "labels" in archive.files else None
            return CalibrationSet(archive["images"], labels, entry["split"])

    def build_generator(self) -> nn.Module:
        return self._loaded(build_generator(self.spec), self.generator_state, GENERATOR_FILE)

    def build_discriminator(self) -> nn.Module:
        net = build_discriminator(self.spec, spectral_norm=False)  # weights were released normalised
        return self._loaded(net, self.discriminator_state, DISCRIMINATOR_FILE)

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
                  metadata: dict, calibration: CalibrationSet | None = None) -> Path:
    """Write the release into a sibling temp folder, then swap it in, so readers never see half."""
    from safetensors.torch import save_file

    staging = release_dir.with_name(release_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(plain_weights(generator), str(staging / GENERATOR_FILE))
    save_file(plain_weights(discriminator), str(staging / DISCRIMINATOR_FILE))
    names = [GENERATOR_FILE, DISCRIMINATOR_FILE]
    if calibration is not None:
        (staging / CALIBRATION_FILE).write_bytes(calibration.to_bytes())
        names.append(CALIBRATION_FILE)
        metadata = {**metadata, "calibration": {"file": CALIBRATION_FILE, "split": calibration.split,
                                                "count": len(calibration.images)}}
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        **asdict(spec),
        **metadata,
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
    needed = {GENERATOR_FILE, DISCRIMINATOR_FILE} | ({CALIBRATION_FILE} if config.get("calibration") else set())
    for name in sorted(needed | set(expected)):
        file = release_dir / name
        if Path(name).name != name or not file.is_file():
            raise CheckpointError(f"{release_dir}: {name} is missing; the release is incomplete")
        if expected.get(name) != sha256_file(file):
            raise CheckpointError(f"{file}: sha256 does not match {CONFIG_FILE}; the file is damaged or replaced")
    states = {}
    for name in (GENERATOR_FILE, DISCRIMINATOR_FILE):
        file = release_dir / name
        try:
            states[name] = load_file(str(file))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{file}: not a safetensors file ({error})") from None
    try:
        spec = NetworkSpec(**{k: config[k] for k in NetworkSpec.__dataclass_fields__})
    except KeyError as error:
        raise CheckpointError(f"{config_path}: missing field {error}") from None
    return Release(release_dir, config, spec, states[GENERATOR_FILE], states[DISCRIMINATOR_FILE])
