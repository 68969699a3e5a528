"""Resumable training state (`state-XXXXXXXX.pt`) in the run folder.

States hold only tensors and plain Python values, are written atomically (temp file, fsync,
rename) and are read back with `weights_only=True`, so a state file can never run code.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch

from serving.formats.files import remove_unfinished_writes, write_atomically

from .errors import CheckpointError

log = logging.getLogger(__name__)
STATE_PATTERN = re.compile(r"^state-(\d{8})\.pt$")


def state_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"state-{step:08d}.pt"


def list_states(run_dir: Path) -> list[Path]:
    """Complete state files, newest first (temp files of an interrupted save are not listed)."""
    found = [p for p in run_dir.glob("state-*.pt") if STATE_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def save_state(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    target = state_path(run_dir, step)
    write_atomically(target, lambda handle: torch.save(state, handle))
    for old in list_states(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return target


def remove_partial_states(run_dir: Path) -> None:
    """Delete what saves that never finished left behind (the process was killed mid-write);
    only the one trainer of a run writes states, so none of these is still being written."""
    remove_unfinished_writes(run_dir, "state-*.pt")


def load_state(path: Path) -> dict:
    """Load one state file safely. Raises CheckpointError for unsafe or unreadable files."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that are not plain tensors and values "
            f"({str(error).splitlines()[0]}); ganserve never unpickles such files") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: not a complete training state ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not a ganserve training state (no 'step' entry)")
    return state


def load_latest_state(run_dir: Path) -> dict:
    """The newest complete state. A truncated newest file (a crash mid-write on a file system
    without atomic rename) is skipped with a warning; an unsafe file stops the resume."""
    states = list_states(run_dir)
    if not states:
        raise CheckpointError(f"{run_dir}: no state-*.pt file to resume from")
    for path in states:
        try:
            return load_state(path)
        except CheckpointError as error:
            if "refused" in str(error):
                raise
            log.warning("skipping %s", error)
    raise CheckpointError(f"{run_dir}: none of {len(states)} state files could be loaded")
