"""One loaded model version behind the routes: its engine, a cross-request batcher per graph,
the generation modes' graph calls through them, and how many requests are using it (a
version swapped out is unloaded only when that reaches zero: serving/repository/registry.py)."""

from __future__ import annotations

import asyncio

from ..engine import Engine
from ..formats.png import encode_pngs
from ..sampling import modes
from ..settings import Settings
from .batcher import Batcher
from .metrics import BATCH_ROWS


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
        self.graphs = modes.Graphs(engine.card.latent_dim, engine.card.num_classes, self.generate_batcher.submit,
                                   self.score_batcher.submit, engine.probability,
                                   _off_the_loop(engine.acceptance_rule), _off_the_loop(engine.run_blend),
                                   _off_the_loop(engine.run_encoder))

    @property
    def identity(self) -> dict:
        """How answers name what made them."""
        return {"name": self.name, "version": self.version}

    def headers(self) -> dict[str, str]:
        return {"X-Model-Name": self.name, "X-Model-Version": self.version}

    def close(self) -> None:
        self.generate_batcher.close()
        self.score_batcher.close()
        self.engine.close()


def _off_the_loop(function):
    """Rare, slow calls (fitting a rejection rule, the blend graph, the encoder) run in a thread, not on the loop."""
    async def call(*args):
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    return call
