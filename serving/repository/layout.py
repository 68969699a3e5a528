"""A model repository on disk: which folders are models, which are versions, which is newest.

    models/                     a repository: one sub-folder per model
      digits/                   a model with one version: model.json at its top
      faces/                    a model with versions, each a model folder
        1/
        2/                      newest: the highest number
    models/digits/              a plain model folder (model.json at its top): a repository
                                of one model, named by its card, as `ganserve serve` took it
    models/faces/               a folder of version folders: a repository of one model

A version folder's name is a positive integer and the highest is the newest. Names that are
not (a `tmp/`, a `v2/`) are listed as ignored, with why; hidden folders (`.4.tmp-123`, where
`ganserve export --out models/faces/4` writes before it renames) are skipped silently. A
model's name is its folder's name, spelled as export spells names.

Scanning reads folder listings, file sizes and modification times only (and the name and
version of a plain folder's card), so a server can poll a repository every few seconds;
verifying a version (hashes, warm-up) is the loader's work.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFolderError
from ..formats.model_card import CARD_FILE

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # the names `ganserve export --name` allows
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")  # positive integers, compared as numbers


@dataclass(frozen=True)
class VersionOnDisk:
    model: str
    version: str  # the folder's number, or the card's version for a model with one unnumbered version
    folder: Path
    fingerprint: tuple  # (file, size, mtime_ns) of every file: when it changes, the version is new again

    @property
    def complete(self) -> bool:
        """Holds a model.json yet (a folder being copied in may not)."""
        return any(name == CARD_FILE for name, *_ in self.fingerprint)


@dataclass(frozen=True)
class ModelOnDisk:
    name: str
    versions: dict[str, VersionOnDisk]  # oldest to newest
    problem: str | None = None  # why the model cannot be served at all
    ignored: dict[str, str] = field(default_factory=dict)  # sub-folder -> why it is not a version

    @property
    def newest(self) -> VersionOnDisk | None:
        return next(reversed(self.versions.values()), None)

    def newest_first(self) -> list[VersionOnDisk]:
        return list(reversed(self.versions.values()))


@dataclass(frozen=True)
class Listing:
    root: Path
    kind: str  # "model folder" (one model, one version), "versions" (one model) or "repository"
    models: dict[str, ModelOnDisk]
    ignored: dict[str, str] = field(default_factory=dict)  # sub-folder -> why it is not a model


def scan(root: str | Path) -> Listing:
    """What `root` holds. Raises ModelFolderError when it is none of the three layouts."""
    root = Path(root)
    if not root.is_dir():
        raise ModelFolderError(f"{root}: not a folder; pass a model folder written by 'ganserve export' or a "
                               "repository of them")
    if (root / CARD_FILE).is_file():
        version = _single_version(_card_name(root), root)
        return Listing(root, "model folder", {version.model: ModelOnDisk(version.model, {version.version: version})})
    folders = _visible_folders(root)
    if folders and all(VERSION_PATTERN.fullmatch(f.name) for f in folders):
        model = _model(root.name, root)
        return Listing(root, "versions", {model.name: model})
    models, ignored = {}, {}
    for folder in folders:
        if NAME_PATTERN.fullmatch(folder.name):
            models[folder.name] = _model(folder.name, folder)
        else:
            ignored[folder.name] = "not a model name (1-63 lowercase letters, digits, '.', '_' or '-')"
    if not models:
        raise ModelFolderError(f"{root}: holds no {CARD_FILE} and no model folders; pass a folder written by "
                               "'ganserve export', or a repository with one sub-folder per model")
    return Listing(root, "repository", models, ignored)


def resolve_model_folder(path: str | Path) -> tuple[Path, str | None]:
    """The model folder a command should open for PATH (a model folder, a folder of versions
    DIR/NAME, or a version DIR/NAME/VERSION), and a note saying which version was chosen."""
    path = Path(path)
    if (path / CARD_FILE).is_file():
        return path, None
    listing = scan(path)
    if listing.kind != "versions":
        names = ", ".join(sorted(listing.models))
        raise ModelFolderError(f"{path}: a repository of several models ({names}); name one, e.g. "
                               f"{path / next(iter(sorted(listing.models)))}")
    model = next(iter(listing.models.values()))
    newest = model.newest
    if newest is None or not newest.complete:
        raise ModelFolderError(f"{path}: its newest version folder has no {CARD_FILE} yet")
    return newest.folder, f"{model.name}: version {newest.version}, the newest of {len(model.versions)}"


def _model(name: str, folder: Path) -> ModelOnDisk:
    has_card = (folder / CARD_FILE).is_file()
    versions, ignored = {}, {}
    for sub in _visible_folders(folder):
        if VERSION_PATTERN.fullmatch(sub.name):
            versions[sub.name] = VersionOnDisk(name, sub.name, sub, _fingerprint(sub))
        else:
            ignored[sub.name] = "not a version number (versions are folders named 1, 2, 3, ...; the highest is newest)"
    if has_card and versions:
        return ModelOnDisk(name, {}, f"holds both {CARD_FILE} and version folders ({', '.join(versions)}); keep "
                                     "one layout: a model folder, or one folder per version", ignored)
    if has_card:
        version = _single_version(name, folder)
        return ModelOnDisk(name, {version.version: version}, None, ignored)
    if not versions:
        return ModelOnDisk(name, {}, f"holds no {CARD_FILE} and no version folders", ignored)
    ordered = dict(sorted(versions.items(), key=lambda item: int(item[0])))
    return ModelOnDisk(name, ordered, None, ignored)


def _single_version(name: str, folder: Path) -> VersionOnDisk:
    """A model folder that is its model's only version, keyed by the version its card states."""
    return VersionOnDisk(name, _card_field(folder, "version") or "1", folder, _fingerprint(folder))


def _card_name(folder: Path) -> str:
    name = _card_field(folder, "name")
    return name if name and NAME_PATTERN.fullmatch(name) else folder.name


def _card_field(folder: Path, key: str) -> str | None:
    """One field of a card, read without checking the rest (the loader checks every field)."""
    try:
        value = json.loads((folder / CARD_FILE).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _visible_folders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _fingerprint(folder: Path) -> tuple:
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        return tuple((p.name, *_size_and_time(p)) for p in files)
    except OSError:
        return ()


def _size_and_time(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns
