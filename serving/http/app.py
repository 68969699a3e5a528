"""The HTTP routes: /generate, /interpolate, /score, /model, and the API docs.

Each route reads its body (`parsing.py`), builds a request with the same builder the command
line uses (`serving/requests.py`), runs a mode (`serving/sampling/modes.py`) whose graph calls
go through the cross-request batchers, and answers. A user's mistake is a 4xx with one line
in the log; anything else is a real fault and keeps its traceback (BentoML's error handler).

The app is plain Starlette, mounted into the BentoML service (`serving/service.py`), which
adds /readyz, /livez, /metrics and the worker processes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..engine import Engine
from ..errors import ServingError
from ..formats.images import encode_frames
from ..formats.png import encode_pngs
from ..requests import (
    INTERPOLATE_FIELDS,
    Plain,
    generate_fields,
    generate_request,
    interpolate_request,
    score_fields,
    score_request,
)
from ..sampling import modes
from ..sampling.latents import discriminator_feeds
from ..settings import Settings
from . import openapi
from .batcher import Batcher
from .bodies import MEDIA_TYPES, images_body, needs_pngs
from .metrics import BATCH_ROWS, EVENT_LOOP_LAG, IMAGES_GENERATED, IMAGES_SCORED, PROBABILITY
from .parsing import ClientGone, json_fields, read_body, score_form

log = logging.getLogger("bentoml.ganserve")  # BentoML shows its own namespace's logs
RETRY_AFTER_S = 1


class NotReady(ServingError):
    status_code = 503


class Serving:
    """The model behind the routes: nothing until `attach` gives it a loaded engine, which it
    wraps with one batcher per graph and the modes' graph calls through them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.generate_fields = generate_fields(settings.max_images)
        self.score_fields = score_fields(settings.max_score_images)

    def attach(self, engine: Engine) -> None:
        s = self.settings
        self.generate_batcher = Batcher(engine.run_generator, s.max_batch, s.max_queue,
                                        BATCH_ROWS.labels(graph="generator").observe, s.batch_wait_ms / 1000,
                                        encode=encode_pngs, max_wait_s=s.max_queue_seconds)
        self.score_batcher = Batcher(engine.run_discriminator, s.max_batch, s.max_queue,
                                     BATCH_ROWS.labels(graph="discriminator").observe, s.batch_wait_ms / 1000,
                                     max_wait_s=s.max_queue_seconds)
        self.graphs = modes.Graphs(engine.card.latent_dim, engine.card.num_classes, self.generate_batcher.submit,
                                   self.score_batcher.submit, engine.probability,
                                   _off_the_loop(engine.acceptance_rule), _off_the_loop(engine.run_blend))
        self.engine = engine

    def ready_engine(self) -> Engine:
        if self.engine is None:
            raise NotReady(self.load_error or "the model is still loading; retry when /readyz answers 200")
        return self.engine


def _off_the_loop(function):
    """Rare, slow calls (fitting a rejection rule, the blend graph) run in a thread, not on the loop."""
    async def call(*args):
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    return call


def create_app(serving: Serving) -> Starlette:
    limit = serving.settings.max_body_bytes
    docs = openapi.document(serving.settings.max_images, serving.settings.max_score_images)

    async def generate(request: Request) -> Response:
        payload = json_fields(await read_body(request, limit), request.headers.get("content-type", ""),
                              "/generate", serving.generate_fields)
        engine = serving.ready_engine()
        wanted = generate_request(engine.card, **payload, max_images=serving.settings.max_images)
        graphs, encoded = serving.graphs, []
        if isinstance(wanted.mode, Plain) and needs_pngs(wanted.format, len(wanted.seeds)):
            async def generate_and_encode(feeds):  # PNGs encoded with the rest of the run, off the loop
                images, pngs = await serving.generate_batcher.submit(feeds, encode=True)
                encoded.append(pngs)
                return images

            graphs = dataclasses.replace(graphs, generate=generate_and_encode)
        sampled = await modes.generate(wanted, graphs)
        IMAGES_GENERATED.inc(len(sampled.images))
        labels = None if sampled.labels is None else sampled.labels.tolist()
        card = engine.card
        body = images_body(sampled.images, wanted.seeds, labels, wanted.format,
                           {"name": card.name, "version": card.version}, sampled.stats,
                           encoded[0] if encoded else None)
        headers = {"X-Seeds": ",".join(map(str, wanted.seeds)), "X-Model-Version": card.version,
                   "X-Model-Name": card.name}
        if labels is not None:
            headers["X-Labels"] = ",".join(map(str, labels))
        if sampled.stats:
            headers["X-Candidates-Drawn"] = str(sampled.stats["candidates_drawn"])
            headers["X-Acceptance-Rate"] = f"{sampled.stats['acceptance_rate']:.4g}"
        return Response(body, media_type=MEDIA_TYPES[wanted.format], headers=headers)

    async def interpolate(request: Request) -> Response:
        payload = json_fields(await read_body(request, limit), request.headers.get("content-type", ""),
                              "/interpolate", INTERPOLATE_FIELDS)
        engine = serving.ready_engine()
        wanted = interpolate_request(engine.card, **payload)
        frames = await modes.interpolate(wanted, serving.graphs)
        IMAGES_GENERATED.inc(len(frames))
        body = await asyncio.get_running_loop().run_in_executor(None, encode_frames, frames, wanted.format,
                                                                wanted.frame_ms)
        return Response(body, media_type=MEDIA_TYPES[wanted.format],
                        headers={"X-Seeds": f"{wanted.seed_from},{wanted.seed_to}",
                                 "X-Model-Version": engine.card.version})

    async def score(request: Request) -> Response:
        body = await read_body(request, limit)
        engine = serving.ready_engine()
        form = score_form(body, request.headers.get("content-type", ""), serving.score_fields, engine.card.image_shape)
        wanted = score_request(engine.card, form["images"], form["labels"],
                               max_images=serving.settings.max_score_images, source=form["source"])
        labels = None if wanted.labels is None else np.asarray(wanted.labels, np.int64)
        logits = await serving.score_batcher.submit(discriminator_feeds(wanted.images, labels))
        probabilities = engine.probability(logits)
        IMAGES_SCORED.inc(len(logits))
        for p in probabilities:
            PROBABILITY.observe(float(p))
        results = [{"image": name, "logit": float(logit), "p_real": float(p)}
                   for name, logit, p in zip(wanted.names, logits, probabilities)]
        return JSONResponse({"model": {"name": engine.card.name, "version": engine.card.version},
                             "results": results}, headers={"X-Model-Version": engine.card.version})

    async def model(request: Request) -> Response:
        json_fields(await read_body(request, limit), request.headers.get("content-type", ""), "/model", {})
        return JSONResponse(serving.ready_engine().info())

    async def docs_json(request: Request) -> Response:
        return JSONResponse(docs)

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(openapi.docs_page())

    routes = [Route("/generate", _answering(generate), methods=["POST"]),
              Route("/interpolate", _answering(interpolate), methods=["POST"]),
              Route("/score", _answering(score), methods=["POST"]),
              Route("/model", _answering(model), methods=["GET", "POST"]),
              Route("/docs.json", docs_json, methods=["GET"]),
              Route("/docs", docs_page, methods=["GET"]),
              Route("/", docs_page, methods=["GET"])]
    return _Routes(routes=routes, lifespan=_watch_the_loop)


ROUTES = ("/generate", "/interpolate", "/score", "/model")  # the API's routes (docs aside)


class _Routes(Starlette):
    """Starlette's routing without a second error-handling stack: BentoML's app, which mounts
    this one, already wraps every request in its own."""

    def build_middleware_stack(self):
        return self.router


LAG_PROBE_S = 0.025


@contextlib.asynccontextmanager
async def _watch_the_loop(app: Starlette):
    """Measure, for as long as the worker serves, how late the event loop wakes a sleeping
    probe: a request held up behind work on the loop shows here (ganserve_event_loop_lag_seconds)."""
    async def probe():
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))

    task = asyncio.create_task(probe())
    try:
        yield
    finally:
        task.cancel()


def _answering(route):
    """Turn a user's mistake into its 4xx, logged as one line; let real faults through."""
    async def endpoint(request: Request) -> Response:
        try:
            return await route(request)
        except ServingError as error:
            log.info("%s %s -> %d: %s", request.method, request.url.path, error.status_code, error)
            headers = {"Retry-After": str(getattr(error, "retry_after_s", RETRY_AFTER_S))} \
                if error.status_code == 503 else None
            return JSONResponse({"error": str(error)}, status_code=error.status_code, headers=headers)
        except ClientGone:
            return Response(status_code=400)  # nobody is left to read it

    return endpoint
