"""One loaded model version behind the routes: its engine, a cross-request batcher per graph,
the generation modes' graph calls through them, and how many requests are using it (a
version swapped out is unloaded only when that reaches zero: serving/repository/registry.py)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from ..engine import Engine
from ..formats.png import encode_pngs
from ..sampling import modes
from ..sampling.latents import discriminator_feeds
from ..settings import Settings
from .batcher import Batcher
from .drift import Monitor
from .metrics import BATCH_ROWS, DRIFT_PSI, DRIFT_WINDOW

log = logging.getLogger("bentoml.ganserve")


class Served:
    def __init__(self, name: str, version: str, engine: Engine, settings: Settings):
        s = settings
        self.name, self.version, self.engine = name, version, engine
        self.in_flight = 0
        self.generate_batcher = Batcher(engine.run_generator, s.max_batch, s.max_queue,
                                        BATCH_ROWS.labels(graph="generator").observe, s.batch_wait_ms / 1000,
                                        encode=encode_pngs, max_wait_s=s.max_queue_seconds)
        self.score_batcher = Batcher(engine.run_discriminator, s.max_batch, s.max_queue,
                                     BATCH_ROWS.labels(graph="discriminator").observe, s.batch_wait_ms / 1000,
                                     max_wait_s=s.max_queue_seconds)
        self.drift = Monitor(engine.card, s.drift_window)
        self.drift_every = s.drift_sample_every if engine.card.has_discriminator else 0
        self._generated = 0  # images plain /generate requests served, for the drift sample
        self._drift_tasks: set[asyncio.Task] = set()
        self.graphs = modes.Graphs(engine.card.latent_dim, engine.card.num_classes, self.generate_batcher.submit,
                                   self.score_batcher.submit, engine.probability,
                                   _off_the_loop(engine.acceptance_rule), _off_the_loop(engine.run_blend),
                                   _off_the_loop(engine.run_encoder), _off_the_loop(engine.nearest_training))

    @property
    def identity(self) -> dict:
        """How answers name what made them."""
        return {"name": self.name, "version": self.version}

    def headers(self) -> dict[str, str]:
        return {"X-Model-Name": self.name, "X-Model-Version": self.version}

    def observe(self, stream: str, logits: np.ndarray) -> None:
        """D's logits of images of `stream` (score, generate) into its drift window and gauges
        (none for a model exported without drift references)."""
        if not self.drift.enabled:
            return
        index = self.drift.add(stream, logits)
        DRIFT_WINDOW.labels(model=self.name, stream=stream).set(len(self.drift.windows[stream].logits))
        if index is not None:
            DRIFT_PSI.labels(model=self.name, stream=stream).set(index)

    def sample_for_drift(self, images: np.ndarray, labels: np.ndarray | None) -> None:
        """Score one in `drift_every` of a plain request's images for the generate window, after
        the answer (a task of its own: the request does not wait for it)."""
        if not self.drift_every or not self.drift.enabled:
            return
        first = -self._generated % self.drift_every
        self._generated += len(images)
        rows = np.arange(first, len(images), self.drift_every)
        if not len(rows):
            return
        feeds = discriminator_feeds(images[rows], None if labels is None else labels[rows])
        task = asyncio.get_running_loop().create_task(self._score_for_drift(feeds))
        self._drift_tasks.add(task)
        task.add_done_callback(self._drift_tasks.discard)

    async def _score_for_drift(self, feeds: dict) -> None:
        try:
            self.observe("generate", await self.score_batcher.submit(feeds))
        except Exception as error:  # a full queue or a closing version: the sample is skipped, never the request
            log.debug("drift sample skipped: %s", error)

    def close(self) -> None:
        self.generate_batcher.close()
        self.score_batcher.close()
        self.engine.close()


def _off_the_loop(function):
    """Rare, slow calls (fitting a rejection rule, the blend graph, the encoder) run in a thread, not on the loop."""
    async def call(*args):
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    return call
