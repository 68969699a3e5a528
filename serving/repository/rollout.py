"""New versions into service, in every worker: the repository polled, operators' commands
carried out (control.py), and what each worker serves written where the others can read it.

One `Rollout` per worker runs as a task on its event loop (started by the app's lifespan).
Every COMMAND_CHECK_S it looks at the command log (one stat); every `poll_seconds` (0: never)
it scans the repository for new versions. An admin request calls `command`, which posts the
command, carries it out here, and waits up to ADMIN_WAIT_S for every worker to carry it out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from . import control
from .registry import Outcome, Registry

log = logging.getLogger("bentoml.ganserve")
COMMAND_CHECK_S = 0.25
ADMIN_WAIT_S = 60.0
KEPT_OUTCOMES = 20  # per worker, for the admin request that waits on them


class Rollout:
    def __init__(self, registry: Registry, poll_seconds: float, folder: Path | None = None,
                 worker: int | None = None, workers: int = 1):
        """`folder`: the server's shared folder (None outside a BentoML server: this process is
        the only worker); `worker`: BentoML's index of this worker, from 1."""
        self.registry, self.poll_seconds = registry, poll_seconds
        self.folder, self.worker, self.workers = folder, worker or 1, workers
        self.applied = 0  # the last command carried out here
        self.outcomes: dict[str, dict] = {}  # str(seq) -> outcome, the newest KEPT_OUTCOMES
        self._lock = asyncio.Lock()
        self._log_seen: tuple = ()

    async def run(self) -> None:
        while not self.registry.ready:
            await asyncio.sleep(0.1)
        await self._catch_up()
        self._write_state()
        next_poll = time.monotonic() + self.poll_seconds
        while True:
            await asyncio.sleep(COMMAND_CHECK_S)
            try:
                if self.folder is not None and (seen := control.changed_since(self.folder, self._log_seen)):
                    self._log_seen = seen
                    await self._catch_up()
                if self.poll_seconds and time.monotonic() >= next_poll:
                    async with self._lock:
                        await self.registry.poll()
                    next_poll = time.monotonic() + self.poll_seconds
                    self._write_state()
            except Exception:  # a fault here must not end the task: the next round tries again
                log.exception("ganserve: checking the model repository failed")

    async def command(self, model: str, action: str, version: str | None) -> dict:
        """Carry out an operator's `load` (a version, or None: the newest, following it again)
        or `rollback` here, then wait for the other workers. Raises ServingError for an unknown
        model or nothing to roll back to."""
        async with self._lock:
            await self.registry.rescan()
            if action == "rollback":
                version, pin = self.registry.rollback_target(model), True
            else:
                pin = version is not None
            self.registry.version_on_disk(model, version)  # unknown: 404 before anything is posted
            command = {"model": model, "action": action, "version": version, "pin": pin}
            sequence = control.post(self.folder, command) if self.folder is not None else self.applied + 1
            outcome = await self.registry.serve_version(model, version, pin=pin)
            self._record(sequence, outcome)
        started = time.monotonic()
        workers = await self._wait_for_workers(sequence) if self.folder is not None else \
            {str(self.worker): {"live": self._live(), "outcome": outcome.to_json()}}
        return {**outcome.to_json(), "action": action, "workers": workers,
                "converged_s": round(time.monotonic() - started, 3),
                "converged": all(w.get("applied", sequence) >= sequence for w in workers.values())}

    async def _catch_up(self) -> None:
        """Carry out every command posted since the last one carried out here; per model only
        the newest counts (each names its whole target), so a restarted worker does not load
        every version an operator ever asked for."""
        async with self._lock:
            pending = control.read(self.folder, self.applied) if self.folder is not None else []
            if not pending:
                return
            await self.registry.rescan()
            newest = {command["model"]: command for command in pending}
            for command in newest.values():
                try:
                    outcome = await self.registry.serve_version(command["model"], command["version"],
                                                                pin=command["pin"])
                except Exception as error:  # e.g. a model this worker does not know: say so, go on
                    outcome = Outcome(command["model"], command["version"], False, str(error))
                self._record(command["seq"], outcome)
            self.applied = pending[-1]["seq"]
            self._write_state()

    def _record(self, sequence: int, outcome: Outcome) -> None:
        self.applied = max(self.applied, sequence)
        self.outcomes[str(sequence)] = outcome.to_json()
        for old in sorted(self.outcomes, key=int)[:-KEPT_OUTCOMES]:
            del self.outcomes[old]
        self._write_state()

    def _live(self) -> dict[str, str | None]:
        return {name: state.live.version if state.live else None for name, state in self.registry.models.items()}

    def _write_state(self) -> None:
        if self.folder is not None:
            control.write_state(self.folder, self.worker, self.applied, self._live(), self.outcomes)

    async def _wait_for_workers(self, sequence: int) -> dict[str, dict]:
        deadline = time.monotonic() + ADMIN_WAIT_S
        while True:
            alive = {index: state for index, state in control.states(self.folder).items() if _alive(state["pid"])}
            done = len(alive) >= self.workers and all(s["applied"] >= sequence for s in alive.values())
            if done or time.monotonic() > deadline:
                return {str(index): {"live": state["live"], "applied": state["applied"],
                                     "outcome": state["outcomes"].get(str(sequence))}
                        for index, state in sorted(alive.items())}
            await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
