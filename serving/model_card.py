"""Read and verify a model folder (generator.onnx, discriminator.onnx, model.json)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFolderError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    path: Path
    raw: dict  # model.json as written by `ganserve export`

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def version(self) -> str:
        return self.raw["version"]

    @property
    def latent_dim(self) -> int:
        return int(self.raw["latent_dim"])

    @property
    def num_classes(self) -> int:
        return int(self.raw["num_classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the uint8 images both graphs speak."""
        return int(self.raw["height"]), int(self.raw["width"]), int(self.raw["channels"])

    @property
    def calibration(self) -> tuple[float, float]:
        """(a, b) of p(real) = sigmoid(a * logit + b)."""
        return float(self.raw["calibration"]["a"]), float(self.raw["calibration"]["b"])

    def graph_path(self, key: str) -> Path | None:
        entry = self.raw.get("graphs", {}).get(key)
        return self.path / entry["file"] if entry else None


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def open_model_folder(path: str | Path, verify_hashes: bool = True) -> ModelCard:
    """Load model.json and check format_version and the sha256 of every file it lists."""
    folder = Path(path)
    card_path = folder / "model.json"
    if not card_path.is_file():
        raise ModelFolderError(f"{folder}: no model.json; pass a folder written by 'ganserve export'")
    try:
        raw = json.loads(card_path.read_text())
    except json.JSONDecodeError as error:
        raise ModelFolderError(f"{card_path}: not valid JSON ({error})") from None
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFolderError(f"{card_path}: format_version {version!r} is newer than this ganserve serves "
                               f"({FORMAT_VERSION}); upgrade ganserve")
    for key in ("name", "version", "latent_dim", "num_classes", "height", "width", "channels", "files",
                "graphs", "calibration"):
        if key not in raw:
            raise ModelFolderError(f"{card_path}: missing field {key!r}")
    for file_name, expected in raw["files"].items():
        file = folder / file_name
        if not file.is_file():
            raise ModelFolderError(f"{folder}: {file_name} is missing")
        if verify_hashes and sha256_file(file) != expected:
            raise ModelFolderError(f"{file}: sha256 does not match model.json; refusing to serve a file "
                                   "that is damaged or was replaced")
    for key in ("generator", "discriminator"):
        if raw["graphs"].get(key, {}).get("file") not in raw["files"]:
            raise ModelFolderError(f"{card_path}: the {key} graph is not among the hashed files")
    return ModelCard(folder, raw)
