"""Readiness of the whole server, not of one worker.

BentoML asks `__is_ready__` of whichever worker takes the /readyz request, and each worker
loads and warms its own engine. One ready worker is not a ready server: a load balancer would
send requests to workers still warming up, and they would answer 503. So each worker marks
itself ready in a folder that the workers of one server share, and /readyz answers 200 once
every worker has. The folder is made by the process that imports the service first (BentoML's
own, before it starts the workers) and reaches the workers through their environment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FOLDER_VARIABLE = "GANSERVE_READY_DIR"


def shared_folder() -> Path:
    """This server's folder; made here in the first process that asks."""
    if not os.environ.get(FOLDER_VARIABLE):
        os.environ[FOLDER_VARIABLE] = tempfile.mkdtemp(prefix="ganserve-ready-")
    return Path(os.environ[FOLDER_VARIABLE])


def mark_ready(worker_index: int | None) -> None:
    """`worker_index`: BentoML's (from 1); None when the app runs outside a BentoML server."""
    if worker_index is None:
        return
    folder = shared_folder()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"worker-{worker_index}").touch()


def all_ready(workers: int, worker_index: int | None) -> bool:
    """Outside a BentoML server (the ASGI app mounted elsewhere) there is one process: this one."""
    if worker_index is None:
        return True
    return len(list(shared_folder().glob("worker-*"))) >= workers
