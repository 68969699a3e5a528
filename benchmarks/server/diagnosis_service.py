"""ganserve's service with instruments for tail_diagnosis.py, and nothing else changed: a
histogram of garbage-collection pauses per generation (ganserve_gc_pause_seconds); a POST
/noop route beside ganserve's, which reads its body and answers one byte (the cost of the
framework alone); and, with GANSERVE_DIAGNOSIS_BENTOML_TIMEOUT=1, BentoML's own timeout
middleware left in place of serving/http/timeout.py's, to measure what that replacement is for.

    GANSERVE_MODEL=... bentoml serve diagnosis_service:GanService     (PYTHONPATH=benchmarks)
"""

import gc
import os
import threading
import time

from prometheus_client import Histogram
from starlette.responses import Response
from starlette.routing import Route

if os.environ.get("GANSERVE_DIAGNOSIS_BENTOML_TIMEOUT") == "1":
    from serving.http import timeout

    timeout.install = lambda: None  # before serving.service imports and calls it

import serving.http.app  # noqa: E402

serving.http.app.ROUTES = (*serving.http.app.ROUTES, "/noop")  # skipped by tracing, like ganserve's routes
from serving.service import GanService  # noqa: E402  (the service BentoML serves)


async def noop(request):
    await request.body()
    return Response(b"x", media_type="image/png")


ROUTES = GanService.mount_apps[0][0]  # ganserve's routes, mounted in the service
ROUTES.router.routes.insert(0, Route("/noop", noop, methods=["POST"]))

GC_PAUSE = Histogram("ganserve_gc_pause_seconds", "Garbage-collection pauses", labelnames=["generation"],
                     buckets=[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
_started: list[float] = [0.0]
_pauses: list[tuple[int, float]] = []


def _note(phase: str, info: dict) -> None:
    """A collection can start anywhere, inside Prometheus's own locked code too: only note it
    here (a list append takes no lock); a thread moves the notes into the histogram."""
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((info["generation"], time.perf_counter() - _started[0]))


def _flush() -> None:
    while True:
        time.sleep(0.5)
        while _pauses:
            generation, seconds = _pauses.pop(0)
            GC_PAUSE.labels(generation=str(generation)).observe(seconds)


gc.callbacks.append(_note)
threading.Thread(target=_flush, name="gc-pauses", daemon=True).start()
