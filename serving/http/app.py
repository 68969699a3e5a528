"""The HTTP routes: /generate, /interpolate, /score, /project, /model, /models, and the API docs.

The plain routes serve the default model; the same routes under /models/NAME serve model NAME
of the repository, and under /models/NAME/versions/VERSION they serve it only while VERSION
is the live one (a pin: 409 otherwise). Every answer names the model and version that made it
(X-Model-Name, X-Model-Version). Operators' routes (/admin/...) are in admin.py.

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
import functools
import logging
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..engine import Engine
from ..errors import ServingError
from ..formats.images import encode_frames
from ..repository.layout import VersionOnDisk
from ..repository.registry import NotReady, Registry
from ..repository.rollout import Rollout
from ..requests import (
    INTERPOLATE_FIELDS,
    Plain,
    generate_fields,
    generate_request,
    interpolate_request,
    project_fields,
    project_request,
    require_discriminator,
    require_encoder,
    score_fields,
    score_request,
)
from ..sampling import modes, projection
from ..sampling.latents import discriminator_feeds
from ..settings import Settings
from . import admin, oip, openapi
from .bodies import MEDIA_TYPES, images_body, needs_pngs, projection_body
from .metrics import (
    EVENT_LOOP_LAG,
    IMAGES_GENERATED,
    IMAGES_PROJECTED,
    IMAGES_SCORED,
    LIVE_VERSION,
    MODEL_EVENTS,
    PROBABILITY,
)
from .parsing import ClientGone, images_form, json_fields, read_body
from .served import Served

log = logging.getLogger("bentoml.ganserve")  # BentoML shows its own namespace's logs
RETRY_AFTER_S = 1


class Serving:
    """The models behind the routes: a repository (serving/repository/) whose live versions the
    routes use, and the task that brings new versions in. `prepare` is quick (the service's
    constructor calls it); `start` loads and gates, and blocks (the worker's load thread)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry: Registry | None = None
        self.rollout: Rollout | None = None
        self.load_error: str | None = None
        self.generate_fields = generate_fields(settings.max_images)
        self.score_fields = score_fields(settings.max_score_images)
        self.project_fields = project_fields(settings.max_score_images)
        self.admin_keys: tuple[bytes, ...] | None = None  # set by the service when admin operations are on
        self._live_labels: dict[str, str] = {}

    def prepare(self, root: str | None = None, worker: int | None = None, folder: Path | None = None) -> None:
        """`root`: the model folder or repository (default: the settings' model); `folder`: the
        server's shared folder, through which operators' commands reach every worker."""
        s = self.settings
        self.registry = Registry(root or s.model, self._open_version, s.default_model, s.max_loaded_models,
                                 self._count)
        self.rollout = Rollout(self.registry, s.poll_seconds, folder, worker, s.workers)

    def start(self, root: str | None = None) -> None:
        if self.registry is None:
            self.prepare(root)
        self.registry.start()

    def _open_version(self, version: VersionOnDisk) -> Served:
        s = self.settings
        engine = Engine(version.folder, device=s.device, max_batch=s.max_batch, threads=s.threads or None,
                        engine=s.engine, precision=s.precision)
        return Served(version.model, version.version, engine, s)

    def _count(self, model: str, version: str, event: str) -> None:
        MODEL_EVENTS.labels(model=model, event=event).inc()
        if event == "live":
            if model in self._live_labels:
                LIVE_VERSION.labels(model=model, version=self._live_labels[model]).set(0)
            LIVE_VERSION.labels(model=model, version=version).set(1)
            self._live_labels[model] = version

    def ready_registry(self) -> Registry:
        if self.load_error is not None:
            raise NotReady(self.load_error)
        if self.registry is None or not self.registry.ready:
            raise NotReady("the model is still loading; retry when /readyz answers 200")
        return self.registry

    def without_discriminator(self) -> tuple[str, ...]:
        """The models whose live version has no discriminator (known once loaded)."""
        if self.registry is None:
            return ()
        return tuple(name for name, state in sorted(self.registry.models.items())
                     if state.live and not state.cards.get(state.live.version, {}).get("has_discriminator", True))

    def use(self, request: Request) -> _Using:
        """`async with serving.use(request) as served`: the version the request's path names
        (the default model's live version on the plain routes), held while the request runs."""
        params = request.path_params
        return _Using(self, params.get("name"), params.get("version"))

    def use_model(self, name: str | None, version: str | None) -> _Using:
        return _Using(self, name, version)

    def server_ready(self) -> bool:
        """Every worker serves the default model (the service replaces this with its check
        across workers; outside a BentoML server this process is the only worker)."""
        return self.load_error is None and self.registry is not None and self.registry.ready


class _Using:
    __slots__ = ("serving", "name", "version", "served")

    def __init__(self, serving: Serving, name: str | None, version: str | None):
        self.serving, self.name, self.version, self.served = serving, name, version, None

    async def __aenter__(self) -> Served:
        registry = self.serving.ready_registry()
        served = registry.lookup(self.name, self.version) or await registry.bring_in(self.name)
        if self.version is not None and served.version != self.version:  # a newer one came in meanwhile
            registry.lookup(self.name, self.version)
        served.in_flight += 1
        self.served = served
        return served

    async def __aexit__(self, *exc) -> None:
        self.served.in_flight -= 1


def create_app(serving: Serving) -> Starlette:
    limit = serving.settings.max_body_bytes
    async def generate(request: Request) -> Response:
        payload = json_fields(await read_body(request, limit), request.headers.get("content-type", ""),
                              "/generate", serving.generate_fields)
        async with serving.use(request) as served:
            wanted = generate_request(served.engine.card, **payload, max_images=serving.settings.max_images)
            graphs, encoded = served.graphs, []
            if isinstance(wanted.mode, Plain) and wanted.max_train_similarity is None and \
                    needs_pngs(wanted.format, len(wanted.seeds)):
                async def generate_and_encode(feeds):  # PNGs encoded with the rest of the run, off the loop
                    images, pngs = await served.generate_batcher.submit(feeds, encode=True)
                    encoded.append(pngs)
                    return images

                graphs = dataclasses.replace(graphs, generate=generate_and_encode)
            sampled = await modes.sample(wanted, graphs)
            if isinstance(wanted.mode, Plain) and wanted.truncation is None and wanted.latents is None and \
                    wanted.max_train_similarity is None:
                served.sample_for_drift(sampled.images, sampled.labels)  # drawn as at export: comparable
        IMAGES_GENERATED.inc(len(sampled.images))
        labels = None if sampled.labels is None else sampled.labels.tolist()
        body = images_body(sampled.images, wanted.seeds, labels, wanted.format, served.identity, sampled.stats,
                           encoded[0] if encoded else None)
        headers = {"X-Seeds": ",".join(map(str, wanted.seeds)), **served.headers()} if wanted.seeds else \
            {"X-Latents": str(len(sampled.images)), **served.headers()}
        if labels is not None:
            headers["X-Labels"] = ",".join(map(str, labels))
        if sampled.stats:
            headers["X-Candidates-Drawn"] = str(sampled.stats["candidates_drawn"])
        if "acceptance_rate" in sampled.stats:
            headers["X-Acceptance-Rate"] = f"{sampled.stats['acceptance_rate']:.4g}"
        if "redrawn" in sampled.stats:  # the memorisation guard (max_train_similarity)
            headers["X-Redrawn"] = str(sampled.stats["redrawn"])
        return Response(body, media_type=MEDIA_TYPES[wanted.format], headers=headers)

    async def interpolate(request: Request) -> Response:
        payload = json_fields(await read_body(request, limit), request.headers.get("content-type", ""),
                              "/interpolate", INTERPOLATE_FIELDS)
        async with serving.use(request) as served:
            wanted = interpolate_request(served.engine.card, **payload)
            frames = await modes.interpolate(wanted, served.graphs)
        IMAGES_GENERATED.inc(len(frames))
        body = await asyncio.get_running_loop().run_in_executor(None, encode_frames, frames, wanted.format,
                                                                wanted.frame_ms)
        ends = ",".join("latent" if seed is None else str(seed) for seed in (wanted.seed_from, wanted.seed_to))
        return Response(body, media_type=MEDIA_TYPES[wanted.format], headers={"X-Seeds": ends, **served.headers()})

    async def score(request: Request) -> Response:
        body = await read_body(request, limit)
        async with serving.use(request) as served:
            engine = served.engine
            require_discriminator(engine.card)
            form = images_form(body, request.headers.get("content-type", ""), serving.score_fields,
                               engine.card.image_shape)
            wanted = score_request(engine.card, form["images"], form["labels"],
                                   max_images=serving.settings.max_score_images, source=form["source"])
            labels = None if wanted.labels is None else np.asarray(wanted.labels, np.int64)
            logits = await served.score_batcher.submit(discriminator_feeds(wanted.images, labels))
        served.observe("score", logits)
        probabilities = engine.probability(logits)
        IMAGES_SCORED.inc(len(logits))
        for p in probabilities:
            PROBABILITY.observe(float(p))
        results = [{"image": name, "logit": float(logit), "p_real": float(p)}
                   for name, logit, p in zip(wanted.names, logits, probabilities)]
        return JSONResponse({"model": served.identity, "results": results}, headers=served.headers())

    async def project(request: Request) -> Response:
        body = await read_body(request, limit)
        async with serving.use(request) as served:
            card = served.engine.card
            require_encoder(card)
            form = images_form(body, request.headers.get("content-type", ""), serving.project_fields,
                               card.image_shape, "/project")
            options = {name: form[name] for name in ("rounds", "candidates", "format") if name in form}
            wanted = project_request(card, form["images"], form["labels"], max_images=serving.settings.max_score_images,
                                     source=form["source"], **options)
            projected = await projection.project(wanted, served.graphs)
        IMAGES_PROJECTED.inc(len(projected.latents))
        body = await asyncio.get_running_loop().run_in_executor(None, projection_body, projected, wanted.names,
                                                                wanted.format, served.identity)
        headers = {"X-Generator-Rows": str(projected.stats["generator_rows"]), **served.headers()}
        return Response(body, media_type=MEDIA_TYPES[wanted.format], headers=headers)

    async def model(request: Request) -> Response:
        json_fields(await read_body(request, limit), request.headers.get("content-type", ""), "/model", {})
        async with serving.use(request) as served:
            return JSONResponse({**served.engine.info(), "served_as": served.identity, "drift": served.drift.view()},
                                headers=served.headers())

    async def models(request: Request) -> Response:
        view = serving.ready_registry().view()
        return JSONResponse({**view, "poll_seconds": serving.settings.poll_seconds,
                             "admin": serving.admin_keys is not None})

    async def docs_json(request: Request) -> Response:
        return JSONResponse(openapi.document(serving.settings.max_images, serving.settings.max_score_images,
                                             serving.without_discriminator()))

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(openapi.docs_page())

    def page(name: str, media_type: str):
        content = (PLAYGROUND / name).read_bytes()

        async def serve(request: Request) -> Response:
            return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})

        return serve

    routes = [Route("/models", _answering(models), methods=["GET"])]
    for prefix in ("", "/models/{name}", "/models/{name}/versions/{version}"):
        routes += [Route(f"{prefix}/generate", _answering(generate), methods=["POST"]),
                   Route(f"{prefix}/interpolate", _answering(interpolate), methods=["POST"]),
                   Route(f"{prefix}/score", _answering(score), methods=["POST"]),
                   Route(f"{prefix}/project", _answering(project), methods=["POST"]),
                   Route(f"{prefix}/model", _answering(model), methods=["GET", "POST"])]
    routes += [*admin.routes(serving, _answering), *oip.routes(serving, _answering),
               Route("/docs.json", docs_json, methods=["GET"]),
               Route("/docs", docs_page, methods=["GET"]),
               Route("/", page("index.html", "text/html"), methods=["GET"]),
               Route("/ui", page("index.html", "text/html"), methods=["GET"]),
               Route("/ui/playground.js", page("playground.js", "text/javascript"), methods=["GET"]),
               Route("/ui/playground.css", page("playground.css", "text/css"), methods=["GET"])]
    return _Routes(routes=routes, lifespan=functools.partial(_lifespan, serving))


# The API's routes (docs aside), as the ends of paths: the plain routes and every model's.
ROUTES = ("/generate", "/interpolate", "/score", "/project", "/model", "/infer")
PLAYGROUND = Path(__file__).parent / "playground"
# The playground's files hold no secret and ask for the key themselves: open when keys are on.
PAGES = ("/", "/ui", "/ui/playground.js", "/ui/playground.css")


class _Routes(Starlette):
    """Starlette's routing without a second error-handling stack: BentoML's app, which mounts
    this one, already wraps every request in its own."""

    def build_middleware_stack(self):
        return self.router


LAG_PROBE_S = 0.025


@contextlib.asynccontextmanager
async def _lifespan(serving: Serving, app: Starlette):
    """For as long as the worker serves: measure how late the event loop wakes a sleeping
    probe (a request held up behind work on the loop shows in ganserve_event_loop_lag_seconds),
    and bring new model versions in (serving/repository/rollout.py)."""
    async def probe():
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))

    async def roll_out():
        while serving.rollout is None:
            await asyncio.sleep(0.1)
        await serving.rollout.run()

    tasks = [asyncio.create_task(probe()), asyncio.create_task(roll_out())]
    try:
        yield
    finally:
        for task in tasks:
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
