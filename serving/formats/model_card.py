"""The model folder's `model.json`: written by `ganserve export`, read by everything that serves.

One dataclass is the schema for both sides: the exporter builds a `ModelCard` and writes it,
the engine reads one back, checks every field's type and every file's sha256, and refuses a
folder that does not match. `/model` shows the card's public view.

    >>> card = ModelCard.read(Path("models/digits"))
    >>> card.image_shape
    (8, 8, 1)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFolderError
from .files import sha256_file, write_atomically

FORMAT_VERSION = 2  # the newest format this ganserve serves
# Cards with a discriminator are still written as format 1, which every ganserve serves; a
# generator-only card (an imported model) is format 2, so an older ganserve refuses it in one
# line ("upgrade ganserve") instead of failing on the missing discriminator.
WITH_DISCRIMINATOR_FORMAT, GENERATOR_ONLY_FORMAT = 1, 2
CARD_FILE = "model.json"


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _graph_entry(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("file"), str) and isinstance(value.get("inputs"), list)
            and isinstance(value.get("output"), str))


# field -> (check, what it must be): every field read back is checked, so a card edited by hand
# is refused with a message that names the field rather than failing somewhere in the engine.
_CHECKS = {
    "format_version": (_positive_int, "a positive integer"),
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "version": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "architecture": (lambda v: isinstance(v, str), "a string"),
    "latent_dim": (_positive_int, "a positive integer"),
    "num_classes": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "class_names": (lambda v: v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v)),
                    "null or a list of strings"),
    "height": (_positive_int, "a positive integer"),
    "width": (_positive_int, "a positive integer"),
    "channels": (lambda v: v in (1, 3) and not isinstance(v, bool), "1 or 3"),
    "graphs": (lambda v: isinstance(v, dict) and all(_graph_entry(e) for e in v.values()),
               "an object of graphs, each with file, inputs and output"),
    "files": (lambda v: isinstance(v, dict) and all(isinstance(h, str) for h in v.values()),
              "an object of file name -> sha256"),
    "calibration": (lambda v: v is None or (isinstance(v, dict) and all(
                        isinstance(v.get(k), (int, float)) and not isinstance(v.get(k), bool) for k in ("a", "b"))),
                    "an object with numbers a and b (null for a model without a discriminator)"),
    "parity": (lambda v: isinstance(v, dict), "an object"),
    "source": (lambda v: isinstance(v, dict), "an object"),
    "export": (lambda v: isinstance(v, dict), "an object"),
}


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str  # s<step>-<first 8 hex digits of generator.onnx's sha256>
    architecture: str
    latent_dim: int
    num_classes: int  # 0: unconditional
    class_names: list[str] | None
    height: int
    width: int
    channels: int
    graphs: dict  # key (generator, discriminator, ...) -> {file, inputs, output, precision}
    files: dict  # file name -> sha256 of every file the folder serves
    calibration: dict | None  # p(real) = sigmoid(a * logit + b), with how it was fitted; None without D
    parity: dict  # per graph: ONNX Runtime against PyTorch at export
    source: dict  # the release it came from
    export: dict  # exporter, opset, versions, date
    format_version: int = WITH_DISCRIMINATOR_FORMAT
    # the training images' thumbnails (train_index.py): {file, count, of, data}; None: not indexed
    train_index: dict | None = None
    folder: Path | None = field(default=None, compare=False)  # where it was read from

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the uint8 images both graphs speak."""
        return self.height, self.width, self.channels

    @property
    def has_discriminator(self) -> bool:
        """Imported generators may come without one: then nothing that needs D is offered."""
        return "discriminator" in self.graphs

    @property
    def has_encoder(self) -> bool:
        """Projection (image -> latent) needs E, which `ganserve train-encoder` adds to a release."""
        return "encoder" in self.graphs

    @property
    def has_train_index(self) -> bool:
        """Memorisation checks (audit, max_train_similarity) need the training images' index."""
        return self.train_index is not None

    @property
    def platt(self) -> tuple[float, float]:
        """(a, b) of p(real) = sigmoid(a * logit + b)."""
        return float(self.calibration["a"]), float(self.calibration["b"])

    def graph_path(self, key: str) -> Path | None:
        entry = self.graphs.get(key)
        return self.folder / entry["file"] if entry and self.folder else None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "folder"}

    def write(self, folder: Path) -> None:
        write_atomically(folder / CARD_FILE, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    @classmethod
    def read(cls, folder: str | Path, verify_hashes: bool = True) -> ModelCard:
        """Load model.json, check every field and the sha256 of every file it lists."""
        folder = Path(folder)
        path = folder / CARD_FILE
        if not path.is_file():
            raise ModelFolderError(f"{folder}: no {CARD_FILE}; pass a folder written by 'ganserve export'")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelFolderError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(raw, dict):
            raise ModelFolderError(f"{path}: expected a JSON object, found {type(raw).__name__}")
        version = raw.get("format_version")
        if _positive_int(version) and version > FORMAT_VERSION:
            raise ModelFolderError(f"{path}: format_version {version!r} is newer than this ganserve serves "
                                   f"({FORMAT_VERSION}); upgrade ganserve")
        known = {f.name for f in dataclasses.fields(cls)} - {"folder"}
        for name, (check, allowed) in _CHECKS.items():
            if name not in raw:
                raise ModelFolderError(f"{path}: missing field {name!r}")
            if not check(raw[name]):
                raise ModelFolderError(f"{path}: field {name!r} must be {allowed}, found {json.dumps(raw[name])[:80]}")
        card = cls(**{k: v for k, v in raw.items() if k in known}, folder=folder)
        card._check_files(path, verify_hashes)
        return card

    def _check_files(self, path: Path, verify_hashes: bool) -> None:
        needed = ("generator",) if self.format_version >= GENERATOR_ONLY_FORMAT else ("generator", "discriminator")
        for key in needed:
            if self.graphs.get(key, {}).get("file") not in self.files:
                raise ModelFolderError(f"{path}: the {key} graph is not among the hashed files")
        if self.has_discriminator and self.calibration is None:
            raise ModelFolderError(f"{path}: field 'calibration' must be an object with numbers a and b for a model "
                                   "with a discriminator")
        if self.train_index is not None and (not isinstance(self.train_index, dict)
                                             or self.train_index.get("file") not in self.files):
            raise ModelFolderError(f"{path}: field 'train_index' must be null or an object whose file is among the "
                                   "hashed files")
        for entry in self.graphs.values():
            if entry["file"] not in self.files:
                raise ModelFolderError(f"{path}: graph file {entry['file']!r} is not among the hashed files")
        for file_name, expected in self.files.items():
            file = self.folder / file_name
            if Path(file_name).name != file_name or not file.is_file():
                raise ModelFolderError(f"{self.folder}: {file_name} is missing")
            if verify_hashes and sha256_file(file) != expected:
                raise ModelFolderError(f"{file}: sha256 does not match {CARD_FILE}; refusing to serve a file "
                                       "that is damaged or was replaced")

    def summary(self) -> dict:
        """What /models shows of each version: enough to tell models apart."""
        return {"card_version": self.version, "architecture": self.architecture,
                "image": {"height": self.height, "width": self.width, "channels": self.channels},
                "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "has_discriminator": self.has_discriminator, "has_encoder": self.has_encoder,
                "auroc": (self.calibration or {}).get("auroc"), "source": self.source.get("imported_from", "export")}

    def view(self, runtime: dict) -> dict:
        """The card as `/model` shows it, with what the runtime actually uses (`runtime`:
        device_requested, provider, precision, fell_back, ...)."""
        return {"name": self.name, "version": self.version, "architecture": self.architecture,
                "image": {"height": self.height, "width": self.width, "channels": self.channels, "dtype": "uint8",
                          "layout": "NHWC"},
                "latent_dim": self.latent_dim, "num_classes": self.num_classes, "class_names": self.class_names,
                "has_discriminator": self.has_discriminator, "has_encoder": self.has_encoder, **runtime,
                "train_index": self.train_index, "calibration": self.calibration,
                "parity": self.parity, "source": self.source}
