"""Files that are either complete or absent: content hashes, and writes that a crash can never
leave half done (a temp file beside the target, flushed to disk, then renamed over it)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"  # a temp file is .NAME.tmp-PID beside its target


def cache_dir() -> Path:
    """Where ganserve keeps what it can make again (decoded folders, evaluation classifiers,
    engine choices): GANSERVE_CACHE, else ~/.cache/ganserve."""
    return Path(os.environ.get("GANSERVE_CACHE", Path.home() / ".cache" / "ganserve"))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_atomically(target: Path, content: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `content` (bytes, or a function that writes to a binary handle) to `target` so
    that readers see the old file or the whole new one, even after a crash or power loss."""
    temp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        _sync_folder(target.parent)
    finally:
        temp.unlink(missing_ok=True)


def remove_unfinished_writes(folder: Path, names: str) -> None:
    """Delete what write_atomically left of files matching `names` (a glob) in `folder` when its
    process was killed mid-write. Only for folders no other process is writing to."""
    for temp in folder.glob(f".{names}{TEMP_MARK}*"):
        temp.unlink(missing_ok=True)


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished folder into place of `target` (which may exist): readers see the old
    folder or the new one; a crash in between leaves `target` absent and `.NAME.old-PID`
    beside it, never a mix of the two."""
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    _sync_folder(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: the folder's own entry list is flushed too."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
