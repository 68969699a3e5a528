"""The straightforward BentoML alternative to ganserve's batcher: the same engine behind
BentoML's adaptive batching (`batchable=True`). Body {"seeds": [N]}; answers base64 PNGs."""

from __future__ import annotations

import base64
import os

import bentoml

from serving.engine import Engine
from serving.formats.images import encode_png


@bentoml.service(name="adaptive", workers=int(os.environ.get("GANSERVE_WORKERS", "1")),
                 traffic={"timeout": 60, "max_concurrency": 1024}, logging={"access": {"enabled": False}})
class Adaptive:
    def __init__(self) -> None:
        self.engine = Engine(os.environ["GANSERVE_MODEL"], device="cpu",
                             threads=int(os.environ.get("GANSERVE_THREADS", "0")) or None)

    @bentoml.api(route="/generate", batchable=True, max_batch_size=64, max_latency_ms=1000)
    def generate(self, seeds: list[int]) -> list[str]:
        images = self.engine.generate(seeds)
        return [base64.b64encode(encode_png(image)).decode("ascii") for image in images]
