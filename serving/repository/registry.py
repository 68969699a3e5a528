"""The models one worker serves: for each, one live version, replaced only by a version that
loaded, verified and passed the quality gate; the replaced one drains and unloads.

    registry = Registry(root, open_version, default="digits")
    registry.start()                        # blocking: scan, load and gate (the load thread)
    served = registry.lookup("digits", None) or await registry.bring_in("digits")

A version goes through three steps before it is served: `open_version` loads it as a start-up
does (every field and sha256 of the card, sessions, warm-up, the spot check against the
export's outputs), then `gate.evaluate` holds it to the quality rules against the live
version, then the switch: one assignment on the event loop, so every request after it gets
the new version and every request before it finishes on the old one, which is unloaded once
no request holds it. A version that fails a step is never served and not tried again until
its files change; the reason is kept for /models, logged and counted.

Which version is wanted: the newest on disk (`follow newest`), unless an operator pinned one
(an admin load of a given version, or a rollback); a pin holds until an admin load without a
version returns the model to following the newest. Older versions are never chosen by
polling: a version refused today does not bring back yesterday's.

Memory: at most `max_loaded` models stay loaded (0: no bound); past it the least recently
used model's live version is unloaded, and its next request loads it again. The default
model is never unloaded. All state changes after `start` happen on the event loop; loading
and gating run in a thread, so the loop keeps serving the live versions meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ModelFolderError, ServingError
from . import gate
from .layout import Listing, ModelOnDisk, VersionOnDisk, scan

log = logging.getLogger("bentoml.ganserve")
DRAIN_TIMEOUT_S = 120.0  # a retired version is unloaded after this even if a request still holds it


class UnknownModel(ServingError):
    status_code = 404


class VersionNotLive(ServingError):
    status_code = 409


class NotReady(ServingError):
    status_code = 503


@dataclass
class Refusal:
    version: str
    fingerprint: tuple
    stage: str  # "load" (verification, warm-up, spot check) or "gate" (quality)
    reason: str
    gate: dict | None = None
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        return {"stage": self.stage, "reason": self.reason, "gate": self.gate,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))}


@dataclass
class Outcome:
    """What became of a request to serve a version (a poll, an admin load, a rollback)."""

    model: str
    version: str | None
    served: bool  # the version is live now (it may have been live already)
    reason: str | None = None
    gate: dict | None = None

    def to_json(self) -> dict:
        return {"model": self.model, "version": self.version, "outcome": "live" if self.served else "refused",
                "reason": self.reason, "gate": self.gate}


@dataclass
class ModelState:
    disk: ModelOnDisk
    live: VersionOnDisk | None = None
    loaded: object | None = None  # the live version's served object while it is in memory
    previous: str | None = None  # the version live before this one: what a rollback returns to
    pinned: str | None = None  # set by an operator: serve this version whatever is newer
    passed: dict[tuple, gate.Verdict] = field(default_factory=dict)  # (version, fingerprint) -> verdict
    refused: dict[str, Refusal] = field(default_factory=dict)
    cards: dict[str, dict] = field(default_factory=dict)  # version -> card summary, once loaded
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.disk.name

    def refusal_of(self, version: VersionOnDisk) -> Refusal | None:
        refusal = self.refused.get(version.version)
        return refusal if refusal and refusal.fingerprint == version.fingerprint else None


class Registry:
    def __init__(self, root, open_version: Callable[[VersionOnDisk], object], default: str | None = None,
                 max_loaded: int = 0, on_change: Callable[[str, str, str], None] | None = None):
        """`open_version`: loads one version (raises ServingError when it cannot be served) and
        returns an object with `.engine`, `.in_flight` and `.close()`; `on_change(model, version,
        event)`: told of every switch and refusal (metrics)."""
        self.root, self.open_version, self.max_loaded = root, open_version, max_loaded
        self.on_change = on_change or (lambda model, version, event: None)
        self.requested_default = default
        self.listing: Listing | None = None
        self.models: dict[str, ModelState] = {}
        self.default: str | None = None
        self.default_reason = ""
        self.ready = False
        self.retiring: list = []

    # --- start-up (the worker's load thread, before any request is served) --------------------
    def start(self) -> None:
        """Scan, then bring up the default model and as many others as may stay loaded. Raises
        ServingError when the default model has no version that can be served."""
        self.listing = scan(self.root)
        self.models = {name: ModelState(disk) for name, disk in self.listing.models.items()}
        self.default, self.default_reason = self._choose_default()
        order = [self.default, *sorted(name for name in self.models if name != self.default)]
        for name in order:
            if self.max_loaded and sum(s.loaded is not None for s in self.models.values()) >= self.max_loaded:
                break
            state = self.models[name]
            served, version = self._first_that_passes(state, state.disk.newest_first(), None)
            if served is not None:
                self._make_live(state, version, served)
        default = self.models[self.default]
        if default.live is None:
            raise ModelFolderError(f"model {self.default!r}: no version can be served ({self._why_none(default)})")
        self.ready = True

    def _choose_default(self) -> tuple[str, str]:
        names = sorted(self.models)
        if self.requested_default is not None:
            if self.requested_default not in self.models:
                raise ModelFolderError(f"default model {self.requested_default!r} is not in {self.root} (it holds "
                                       f"{', '.join(names)})")
            return self.requested_default, "set by --default-model"
        if len(names) == 1:
            return names[0], "the only model"
        return names[0], "the first by name (set --default-model to choose)"

    def _first_that_passes(self, state: ModelState, versions: list[VersionOnDisk], live_spread: float | None):
        """(served, version) for the first of `versions` that loads and passes, or (None, None)."""
        if state.disk.problem:
            return None, None
        for version in versions:
            if not version.complete or state.refusal_of(version):
                continue
            served = self._open_and_gate(state, version, live_spread)
            if served is not None:
                return served, version
        return None, None

    def _why_none(self, state: ModelState) -> str:
        if state.disk.problem:
            return state.disk.problem
        reasons = [f"version {r.version}: {r.reason}" for r in state.refused.values()]
        return "; ".join(reasons) or "no version folder holds a model.json"

    # --- loading, gating, switching ------------------------------------------------------------
    def _open_and_gate(self, state: ModelState, version: VersionOnDisk, live_spread: float | None):
        """Blocking: the served version, or None with the refusal recorded. A version that
        passed the gate with these very files is not gated again (a reload after unloading, a
        rollback); it is still verified, since its files could have changed since."""
        key = (version.version, version.fingerprint)
        try:
            served = self.open_version(version)
        except Exception as error:  # every fault of a candidate is a refusal; the live one serves on
            if not isinstance(error, ServingError):
                log.exception("ganserve: loading %s version %s failed", state.name, version.version)
            self._refuse(state, version, "load", f"{type(error).__name__}: {error}"
                         if not isinstance(error, ServingError) else str(error))
            return None
        state.cards[version.version] = served.engine.card.summary()
        if key in state.passed:
            return served
        try:
            verdict = gate.evaluate(served.engine, live_spread)
        except Exception as error:
            log.exception("ganserve: gating %s version %s failed", state.name, version.version)
            served.close()
            self._refuse(state, version, "gate", f"{type(error).__name__}: {error}")
            return None
        if not verdict.passed:
            served.close()
            self._refuse(state, version, "gate", verdict.reason, verdict.to_json())
            return None
        state.passed[key] = verdict
        return served

    def _refuse(self, state: ModelState, version: VersionOnDisk, stage: str, reason: str,
                verdict: dict | None = None) -> None:
        state.refused[version.version] = Refusal(version.version, version.fingerprint, stage, reason, verdict)
        live = state.live.version if state.live else "none"
        log.warning("ganserve: model %s version %s refused at %s: %s (live version: %s)", state.name,
                    version.version, stage, reason, live)
        self.on_change(state.name, version.version, f"refused_{stage}")

    def _make_live(self, state: ModelState, version: VersionOnDisk, served) -> None:
        """The switch. On the event loop after start-up: one step, no await in between."""
        old = state.loaded
        if state.live is not None and state.live.version != version.version:
            state.previous = state.live.version
        state.live, state.loaded, state.last_used = version, served, time.monotonic()
        state.refused.pop(version.version, None)
        self.on_change(state.name, version.version, "live")
        if old is not None and old is not served:
            self._retire(old)
        log.info("ganserve: model %s version %s is live%s", state.name, version.version,
                 f" (was {state.previous})" if state.previous else "")

    def _retire(self, served) -> None:
        """Unload `served` once the requests holding it are done (now, outside an event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            served.close()
            return
        self.retiring.append(served)
        loop.create_task(self._drain(served))

    async def _drain(self, served) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while served.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        served.close()
        self.retiring.remove(served)

    # --- serving requests ----------------------------------------------------------------------
    def state_of(self, name: str | None) -> ModelState:
        if not self.ready:
            raise NotReady("the models are still loading; retry when /readyz answers 200")
        state = self.models.get(self.default if name is None else name)
        if state is None:
            raise UnknownModel(f"model {name!r} is not served here; GET /models lists the models "
                               f"({', '.join(sorted(self.models))})")
        return state

    def lookup(self, name: str | None, version: str | None):
        """The live version's served object if it is loaded, None if it must be loaded first;
        a pinned `version` that is not the live one is refused."""
        state = self.state_of(name)
        if version is not None and (state.live is None or version != state.live.version):
            self._refuse_pin(state, version)
        state.last_used = time.monotonic()
        return state.loaded

    def _refuse_pin(self, state: ModelState, version: str) -> None:
        live = state.live.version if state.live else None
        if version not in state.disk.versions and version not in state.refused:
            raise UnknownModel(f"version: model {state.name!r} has no version {version!r} (versions: "
                               f"{', '.join(state.disk.versions) or 'none'})")
        refusal = state.refused.get(version)
        why = f" (it was refused: {refusal.reason})" if refusal else ""
        raise VersionNotLive(f"version: {version!r} of model {state.name!r} is not live{why}; the live version is "
                             f"{live!r}: pin it, or leave the version out")

    async def bring_in(self, name: str | None):
        """The live version of a model that is not loaded (never yet, or unloaded to stay within
        max_loaded), loaded now; the first version that passes, for a model never loaded."""
        state = self.state_of(name)
        async with state.lock:
            if state.loaded is not None:
                return state.loaded
            # A model unloaded while a newer version arrived tries that one first (polling leaves
            # unloaded models alone, so as not to load them).
            if state.live is None:
                versions = state.disk.newest_first()
            else:
                newer = self._candidate(state) if state.pinned is None else None
                versions = [newer, state.live] if newer is not None and newer != state.live else [state.live]
            served, version = await asyncio.get_running_loop().run_in_executor(
                None, self._first_that_passes, state, versions, self._live_spread(state))
            if served is None:
                raise NotReady(f"model {state.name!r}: no version can be served ({self._why_none(state)})")
            self._make_live(state, version, served)
            self._keep_within_bound(state)
            return served

    def _keep_within_bound(self, keep: ModelState) -> None:
        loaded = [s for s in self.models.values() if s.loaded is not None]
        while self.max_loaded and len(loaded) > self.max_loaded:
            candidates = [s for s in loaded if s is not keep and s.name != self.default]
            if not candidates:
                return
            oldest = min(candidates, key=lambda s: s.last_used)
            log.info("ganserve: unloading model %s (least recently used; at most %d stay loaded)", oldest.name,
                     self.max_loaded)
            served, oldest.loaded = oldest.loaded, None
            self._retire(served)
            loaded.remove(oldest)

    # --- new versions: polling and operators ---------------------------------------------------
    async def rescan(self) -> None:
        """Read the repository again; a model added since start is served from its first request."""
        self.listing = await asyncio.get_running_loop().run_in_executor(None, scan, self.root)
        for name, disk in self.listing.models.items():
            if name in self.models:
                self.models[name].disk = disk
            else:
                self.models[name] = ModelState(disk)

    async def poll(self) -> list[Outcome]:
        """Scan the repository again and try each loaded model's newest untried version
        (models not loaded are left alone: their next request looks for a newer version)."""
        await self.rescan()
        outcomes = []
        for state in list(self.models.values()):
            if state.pinned is None and state.loaded is not None and not state.disk.problem:
                candidate = self._candidate(state)
                if candidate is not None:
                    outcomes.append(await self.serve_version(state.name, candidate.version, pin=None))
        return outcomes

    def _candidate(self, state: ModelState) -> VersionOnDisk | None:
        """The newest complete version newer than the live one (or the live one with changed
        files) that was not refused with these very files."""
        versions = state.disk.newest_first()
        for version in versions:
            if state.live is not None and version.version == state.live.version:
                return None if version.fingerprint == state.live.fingerprint or state.refusal_of(version) \
                    else version
            if version.complete and state.refusal_of(version) is None:
                return version
        return None

    async def serve_version(self, name: str, version: str | None, pin: bool | None) -> Outcome:
        """Load, verify, gate and switch to `version` of `name` (None: the newest on disk).
        `pin`: True pins the model to it, False returns the model to following the newest,
        None leaves the pin as it is (polling)."""
        state = self.state_of(name)
        async with state.lock:
            target = self.version_on_disk(name, version)
            if not target.complete:
                return Outcome(name, target.version, False, f"version {target.version!r} of model {name!r} has no "
                                                            "model.json yet (still being copied in?)")
            outcome = await self._switch_to(state, target)
            if outcome.served and pin is not None:
                state.pinned = target.version if pin else None
            return outcome

    async def _switch_to(self, state: ModelState, target: VersionOnDisk) -> Outcome:
        if state.live is not None and state.live.version == target.version and \
                state.live.fingerprint == target.fingerprint and state.loaded is not None:
            return Outcome(state.name, target.version, True, "already live")
        served = await asyncio.get_running_loop().run_in_executor(
            None, self._open_and_gate, state, target, self._live_spread(state))
        if served is None:
            refusal = state.refused[target.version]
            return Outcome(state.name, target.version, False, f"refused at {refusal.stage}: {refusal.reason}",
                           refusal.gate)
        self._make_live(state, target, served)
        self._keep_within_bound(state)
        verdict = state.passed.get((target.version, target.fingerprint))
        return Outcome(state.name, target.version, True, None, verdict.to_json() if verdict else None)

    def version_on_disk(self, name: str, version: str | None) -> VersionOnDisk:
        """`version` of model `name` (None: its newest), or UnknownModel (404) naming what there is."""
        state = self.state_of(name)
        target = state.disk.versions.get(version) if version is not None else state.disk.newest
        if target is None:
            wanted = f"no version {version!r}" if version is not None else "no versions"
            held = ", ".join(state.disk.versions) or f"none: {state.disk.problem or 'no version folders'}"
            raise UnknownModel(f"version: model {name!r} has {wanted} on disk (versions: {held})")
        return target

    @staticmethod
    def _live_spread(state: ModelState) -> float | None:
        verdict = state.passed.get((state.live.version, state.live.fingerprint)) if state.live else None
        return verdict.spread if verdict else None

    def rollback_target(self, name: str) -> str:
        state = self.state_of(name)
        if state.previous is None:
            raise VersionNotLive(f"model {name!r}: no earlier version was live in this server; load one by "
                                 "version instead")
        return state.previous

    # --- what /models shows --------------------------------------------------------------------
    def view(self) -> dict:
        models = []
        for name in sorted(self.models):
            models.append(self._model_view(self.models[name]))
        return {"default": self.default, "default_because": self.default_reason,
                "layout": self.listing.kind if self.listing else None, "max_loaded_models": self.max_loaded,
                "models": models, "ignored": dict(self.listing.ignored) if self.listing else {}}

    def _model_view(self, state: ModelState) -> dict:
        live = state.live.version if state.live else None
        versions = []
        for version in state.disk.newest_first():
            refusal = state.refusal_of(version)
            verdict = state.passed.get((version.version, version.fingerprint))
            if version.version == live:
                status = "live"
            elif refusal:
                status = "refused"
            elif not version.complete:
                status = "incomplete (no model.json yet)"
            elif verdict:
                status = "passed, not live"
            else:
                status = "not tried"
            entry = {"version": version.version, "state": status}
            if refusal:
                entry["refused"] = refusal.to_json()
            if verdict:
                entry["gate"] = verdict.to_json()
            if version.version in state.cards:
                entry["card"] = state.cards[version.version]
            versions.append(entry)
        follows = f"pinned to {state.pinned}" if state.pinned else "newest"
        return {"name": state.name, "default": state.name == self.default, "live": live,
                "loaded": state.loaded is not None, "follows": follows,
                "previous": state.previous, "problem": state.disk.problem, "card": state.cards.get(live),
                "versions": versions, "ignored": state.disk.ignored}
