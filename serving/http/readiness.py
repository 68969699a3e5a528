"""Readiness of the whole server, not of one worker.

BentoML asks `__is_ready__` of whichever worker takes the /readyz request, and each worker
loads and warms its own engine. One ready worker is not a ready server: a load balancer would
send requests to workers still warming up, and they would answer 503. So each worker marks
itself ready in a folder that the workers of one server share, and /readyz answers 200 once
every worker has. BentoML's own process makes a fresh folder when it imports the service,
before it starts the workers, and they find it in the environment they inherit.

A worker that dies (and is restarted by BentoML) must not count as ready: each mark holds its
worker's process id and counts only while that process lives, and a restarted worker removes
its predecessor's mark before it loads the model again.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

FOLDER_VARIABLE = "GANSERVE_READY_DIR"


def start(worker_index: int | None) -> None:
    """At import: BentoML's own process (no worker index yet) makes this server's folder,
    whatever its environment held; a worker keeps the one it inherited."""
    if worker_index is None:
        folder = tempfile.mkdtemp(prefix="ganserve-ready-")
        os.environ[FOLDER_VARIABLE] = folder
        atexit.register(shutil.rmtree, folder, True)  # gone with the server
    elif (folder := _folder()) is not None:
        (folder / f"worker-{worker_index}").unlink(missing_ok=True)  # a predecessor's, if this is a restart


def mark_ready(worker_index: int | None) -> None:
    """`worker_index`: BentoML's (from 1); None when the app runs outside a BentoML server."""
    folder = _folder()
    if worker_index is not None and folder is not None:
        (folder / f"worker-{worker_index}").write_text(str(os.getpid()))


def all_ready(workers: int, worker_index: int | None) -> bool:
    """Outside a BentoML server (the ASGI app mounted elsewhere), or with no shared folder,
    this process is the only one it can speak for."""
    folder = _folder()
    if worker_index is None or folder is None:
        return True
    return sum(_alive(mark) for mark in folder.glob("worker-*")) >= workers


def _alive(mark: Path) -> bool:
    try:
        os.kill(int(mark.read_text()), 0)
    except (OSError, ValueError):  # gone, or a mark being written
        return False
    return True


def server_folder() -> Path | None:
    """The folder this server's workers share (None outside a BentoML server); operators'
    commands reach every worker through it too (serving/repository/control.py)."""
    return _folder()


def _folder() -> Path | None:
    value = os.environ.get(FOLDER_VARIABLE)
    return Path(value) if value and Path(value).is_dir() else None
