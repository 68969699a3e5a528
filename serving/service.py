"""The BentoML service: ganserve's routes (serving/http/app.py) mounted in a BentoML service,
which adds the worker processes, /readyz, /livez, /metrics, the bento and its container image.

    bentoml serve serving.service:GanService        (what `ganserve serve` runs)

Import does what BentoML needs before any worker starts, and nothing else: it reads the
settings (the worker count and the request limits are part of the service's definition),
declares the model (a model-store tag is pinned into the bento), replaces BentoML's request
timeout middleware with one that cleans up after itself (serving/http/timeout.py), and, in
BentoML's own process, makes the folder through which the workers report readiness
(serving/http/readiness.py).
Each worker loads, warms and gates its models in a background thread (serving/repository/),
so /livez answers at once and /readyz turns 200 only when every worker serves the default
model.
"""

from __future__ import annotations

import gc
import logging
import threading

import bentoml

from .errors import ServingError
from .http import auth, readiness, timeout
from .http.app import PAGES, ROUTES, Serving, create_app
from .http.client_schema import ClientSchema
from .settings import Settings

log = logging.getLogger("bentoml.ganserve")  # BentoML shows its own namespace's logs
timeout.install()  # BentoML's own leaves a live timer behind every request (serving/http/timeout.py)
SETTINGS = Settings.from_env()
readiness.start(bentoml.server_context.worker_index)
SERVING = Serving(SETTINGS)
# The container's base: Python's slim image as it is. For a distro it knows, BentoML adds
# build-essential, git and gnupg to every image (the CPU image went from 1.18 GB to 589 MB
# without them, README "Bento and container"); nothing in the serving stack
# builds from source (every pinned package ships a wheel), so the distro is named as one
# BentoML does not know. bentofile.yaml / bentofile-gpu.yaml add the pinned packages to it.
IMAGE = bentoml.images.Image(base_image="python:3.11-slim", distro="python-slim", python_version="3.11")


def _server_ready() -> bool:
    """Every worker of this server serves the default model: /readyz, and the protocol's
    /v2/health/ready."""
    return (SERVING.registry is not None and SERVING.registry.ready
            and readiness.all_ready(SETTINGS.workers, bentoml.server_context.worker_index))


SERVING.server_ready = _server_ready


@bentoml.asgi_app(create_app(SERVING), path="/")
@bentoml.service(
    name="ganserve",
    image=IMAGE,
    workers=SETTINGS.workers,
    # No BentoML max_concurrency: past it BentoML answers 429 with no Retry-After (measured under
    # overload, benchmarks/server/overload.py); the batcher's own limits refuse with 503 and Retry-After.
    traffic={"timeout": 60},
    # BentoML's OpenTelemetry middleware makes a span for every request even with tracing off
    # (no exporter, sample rate 0): 22% of a loaded worker's CPU, more than the engine's run.
    # ganserve's routes skip it unless GANSERVE_TRACING=1 asks for their spans.
    tracing={} if SETTINGS.tracing else {"excluded_urls": [f"{route}$" for route in ROUTES]},
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class GanService:
    if not SETTINGS.model_is_folder:  # a model-store tag: declaring it pins the model into the bento
        bento_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        # an unknown tag never gets here: BentoML stops the start with a non-zero exit that names it
        root = SETTINGS.model if SETTINGS.model_is_folder else self.bento_model.path
        SERVING.prepare(root, bentoml.server_context.worker_index, readiness.server_folder())
        threading.Thread(target=self._load, name="ganserve-load", daemon=True).start()

    def _load(self) -> None:
        try:
            SERVING.start()
        except ServingError as error:  # e.g. a file whose sha256 does not match: never served
            self._refuse(f"the model cannot be served: {error}")
            return
        except Exception as error:  # a real fault: its traceback is logged, and the reason is still answered
            log.exception("ganserve: loading %s failed", SETTINGS.model)
            self._refuse(f"the model cannot be served: {type(error).__name__}: {error}")
            return
        readiness.mark_ready(bentoml.server_context.worker_index)
        # Everything made while starting (the framework, the models) lives as long as the worker:
        # keep the cyclic GC from re-scanning it in the middle of requests.
        gc.freeze()
        registry = SERVING.registry
        for name, state in sorted(registry.models.items()):
            if state.loaded is not None:
                engine = state.loaded.engine
                log.info("ganserve: serving %s version %s on %s (%s)%s%s", name, state.live.version, engine.provider,
                         engine.precision, "; fell back from the device asked for" if engine.fell_back else "",
                         " (the default model)" if name == registry.default else "")

    @staticmethod
    def _refuse(reason: str) -> None:
        """Every request is answered with `reason` (503), and /livez fails, so an orchestrator
        restarts the pod and shows the failure instead of waiting for a start that never comes."""
        SERVING.load_error = reason
        log.error("ganserve: %s", reason)

    def __is_alive__(self) -> bool:
        return SERVING.load_error is None

    def __is_ready__(self) -> bool:
        """200 on /readyz only when every worker of this server has its engine warm."""
        return _server_ready()


def _require_keys() -> None:
    """API keys when a key file is set; otherwise a line at start-up saying the server is open."""
    if not SETTINGS.api_keys_file:
        if bentoml.server_context.worker_index in (None, 1):
            log.warning("ganserve: no API keys: every client that reaches this port may use it (pass "
                        "--api-key-file or set GANSERVE_API_KEYS_FILE to require keys)")
        return
    try:
        keys = auth.read_keys(SETTINGS.api_keys_file)
    except auth.KeyFileError as error:
        raise SystemExit(f"ganserve: {error}") from None
    open_paths = (*auth.PROBES, *PAGES) if SETTINGS.protect_metrics else (*auth.PROBES, *PAGES, "/metrics")
    GanService.add_asgi_middleware(auth.BearerAuth, keys=keys, open_paths=open_paths)
    if bentoml.server_context.worker_index in (None, 1):
        log.info("ganserve: API keys required (%d in %s); open: %s", len(keys), SETTINGS.api_keys_file,
                 ", ".join(open_paths))


def _admin_keys() -> None:
    """The admin routes' keys, when an admin key file is set (serving/http/admin.py)."""
    if not SETTINGS.admin_keys_file:
        return
    try:
        keys = auth.read_keys(SETTINGS.admin_keys_file)
        api_keys = auth.read_keys(SETTINGS.api_keys_file) if SETTINGS.api_keys_file else ()
    except auth.KeyFileError as error:
        raise SystemExit(f"ganserve: {error}") from None
    if set(keys) & set(api_keys):
        raise SystemExit(f"ganserve: {SETTINGS.admin_keys_file}: an admin key is also an API key; admin keys must "
                         "be their own")
    SERVING.admin_keys = keys
    if bentoml.server_context.worker_index in (None, 1):
        log.info("ganserve: admin routes on (/admin/models/NAME/load, .../rollback), %d admin keys", len(keys))


_require_keys()
_admin_keys()
# After the keys' middleware, so that it runs inside it: /schema.json needs a key when keys are on.
GanService.add_asgi_middleware(ClientSchema, schema=GanService.schema, max_images=SETTINGS.max_images,
                               max_score_images=SETTINGS.max_score_images)
