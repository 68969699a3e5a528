"""BentoML's own ceiling: an `async def` endpoint that does nothing, with ganserve's settings."""

from __future__ import annotations

import os

import bentoml
from starlette.responses import Response


@bentoml.service(name="noop", workers=int(os.environ.get("GANSERVE_WORKERS", "1")),
                 traffic={"timeout": 60, "max_concurrency": 1024}, logging={"access": {"enabled": False}})
class Noop:
    @bentoml.api(route="/generate")
    async def generate(self, seed: int = 0, n: int = 1) -> bytes:
        return Response(b"")
