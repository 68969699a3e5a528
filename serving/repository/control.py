"""Operators' commands, seen by every worker of one server.

An admin request reaches one worker, but every worker serves the model, so a command must
reach them all. The workers of one server share a folder (serving/http/readiness.py); a
command is appended there to `commands.jsonl` under a file lock, with a sequence number and
the version it resolved to (a rollback's target is the version *this* worker had before, and
every worker must go to the same one). Each worker applies the commands it has not applied,
in order, and writes what it serves to `worker-N.models.json`. The worker that took the
request waits until every live worker has applied its command, and answers with what each
serves. A worker that restarts replays the log, so it comes back serving what its siblings
serve.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from ..formats.files import write_atomically

COMMANDS = "commands.jsonl"
LOCK = "commands.lock"


def post(folder: Path, command: dict) -> int:
    """Append `command` with the next sequence number; returns the number."""
    with open(folder / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sequence = len(read(folder)) + 1
        with open(folder / COMMANDS, "a") as log:
            log.write(json.dumps({**command, "seq": sequence}) + "\n")
            log.flush()
            os.fsync(log.fileno())
        return sequence


def read(folder: Path, after: int = 0) -> list[dict]:
    """The commands numbered above `after`, in order (whole lines only: one being written is
    left for the next read)."""
    try:
        text = (folder / COMMANDS).read_text()
    except FileNotFoundError:
        return []
    commands = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            command = json.loads(line)
            if command["seq"] > after:
                commands.append(command)
    return commands


def changed_since(folder: Path, seen: tuple) -> tuple | None:
    """The log's (size, mtime) if it changed since `seen` (one stat: cheap enough to ask often)."""
    try:
        status = os.stat(folder / COMMANDS)
    except FileNotFoundError:
        return None
    now = (status.st_size, status.st_mtime_ns)
    return now if now != seen else None


def write_state(folder: Path, worker: int, applied: int, live: dict[str, str | None], outcomes: dict) -> None:
    state = {"pid": os.getpid(), "applied": applied, "live": live, "outcomes": outcomes, "at": time.time()}
    write_atomically(folder / f"worker-{worker}.models.json", json.dumps(state).encode())


def states(folder: Path) -> dict[int, dict]:
    """Every worker's last written state, by worker index."""
    found = {}
    for path in folder.glob("worker-*.models.json"):
        try:
            found[int(path.name.split("-")[1].split(".")[0])] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a worker's file being replaced: read it next time
    return found
