"""Service settings, from environment variables (so `ganserve serve`, a bento and a container
are configured the same way). Read once, by `serving/service.py`, and passed down from there."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .runtime import providers
from .runtime.cpus import available_cpus
from .runtime.engines import ENGINES

DEFAULT_MODEL_TAG = "ganserve-digits:latest"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # serving/engine.py


def _int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected an integer") from None
    if value < low:
        raise SystemExit(f"{name}={raw!r}: must be at least {low}")
    return value


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise SystemExit(f"{name}={raw!r}: must be 0 (off) or a positive number of seconds")
    return value


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name) or allowed[0]
    if value not in allowed:
        raise SystemExit(f"{name}={value!r}: use one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    model: str  # a model folder, a repository of them (serving/repository/layout.py), or a BentoML model tag
    device: str  # auto | cpu | cuda | tensorrt
    max_images: int  # most images one generate request may ask for
    max_score_images: int  # most images one score request may send
    max_batch: int  # most rows in one ONNX Runtime run (64: past it, per-image speed drops on CPU)
    max_queue: int  # rows waiting before requests are refused with 503
    max_queue_seconds: float  # seconds of queued work before requests are refused with 503
    batch_wait_ms: int  # extra wait to grow batches (0: greedy, no added latency)
    threads: int  # ONNX Runtime intra-op threads per worker (0: its default)
    workers: int  # service worker processes
    max_body_bytes: int  # request body limit (413 beyond)
    access_log: bool
    tracing: bool  # BentoML's OpenTelemetry spans on ganserve's routes (off: they cost 22% of a worker's CPU)
    api_keys_file: str | None = None  # one key per line; None: the server is open (serving/http/auth.py)
    protect_metrics: bool = False  # /metrics needs a key too
    default_model: str | None = None  # what the plain routes serve; None: the only model (or the first by name)
    poll_seconds: float = 10.0  # how often the repository is scanned for new versions (0: never)
    max_loaded_models: int = 0  # models kept in memory per worker, least recently used unloaded (0: no bound)
    admin_keys_file: str | None = None  # keys of the admin routes; None: they are off (serving/http/admin.py)
    engine: str = "auto"  # auto (measured per model: serving/runtime/engines.py) | onnxruntime | openvino
    precision: str = "auto"  # auto | fp32 | fp16 (GPU graphs) | bf16 (OpenVINO on a CPU with native bfloat16)

    @property
    def model_is_folder(self) -> bool:
        """A model folder on disk, rather than a BentoML model-store tag."""
        return Path(self.model).is_dir()

    @classmethod
    def from_env(cls) -> Settings:
        device = os.environ.get("GANSERVE_DEVICE", "auto")
        if device not in providers.DEVICES:
            raise SystemExit(f"GANSERVE_DEVICE={device!r}: use one of {', '.join(providers.DEVICES)}")
        # Unset (or 0) workers: the same layout as `ganserve serve`, so a container gets it too.
        workers, threads = worker_layout(device, _int("GANSERVE_WORKERS", 0, low=0), _int("GANSERVE_THREADS", 0, low=0))
        return cls(
            model=os.environ.get("GANSERVE_MODEL", DEFAULT_MODEL_TAG),
            device=device,
            max_images=_int("GANSERVE_MAX_IMAGES", 64),
            max_score_images=_int("GANSERVE_MAX_SCORE_IMAGES", 256),
            max_batch=_int("GANSERVE_MAX_BATCH", 64),
            max_queue=_int("GANSERVE_MAX_QUEUE", 8192),
            max_queue_seconds=_int("GANSERVE_MAX_QUEUE_SECONDS", 10),
            batch_wait_ms=_int("GANSERVE_BATCH_WAIT_MS", 0, low=0),
            threads=threads,
            workers=workers,
            max_body_bytes=_int("GANSERVE_MAX_BODY_BYTES", 32 * 1024 * 1024),
            access_log=os.environ.get("GANSERVE_ACCESS_LOG", "0") == "1",
            tracing=os.environ.get("GANSERVE_TRACING", "0") == "1",
            api_keys_file=os.environ.get("GANSERVE_API_KEYS_FILE") or None,
            protect_metrics=os.environ.get("GANSERVE_PROTECT_METRICS", "0") == "1",
            default_model=os.environ.get("GANSERVE_DEFAULT_MODEL") or None,
            poll_seconds=_seconds("GANSERVE_POLL_SECONDS", 10.0),
            max_loaded_models=_int("GANSERVE_MAX_LOADED_MODELS", 0, low=0),
            admin_keys_file=os.environ.get("GANSERVE_ADMIN_KEYS_FILE") or None,
            engine=_choice("GANSERVE_ENGINE", ENGINES),
            precision=_choice("GANSERVE_PRECISION", PRECISIONS),
        )


# On an H200 with 16 cores, 4 CUDA workers served 16-image requests 4.5x faster than one
# (22,568 vs 4,970 images/s at 128 clients) and single images 14% faster at 128 clients; at 32
# clients cuDNN's per-shape searches held both back (benchmarks/README.md, "HTTP on the GPU").
GPU_WORKERS = 4


def worker_layout(device: str, workers: int, threads: int) -> tuple[int, int]:
    """(workers, ONNX Runtime threads per worker). On the CPU one single-threaded worker per
    core served the most requests in benchmarks/ (the HTTP work of one request overlaps the
    compute of another). On a GPU the HTTP work is the bottleneck, and one worker's event loop
    does it on one core: GPU_WORKERS workers, each with its own session on the device."""
    if workers:
        return workers, threads
    if providers.gpu_wanted(device):
        return min(GPU_WORKERS, available_cpus()), threads
    return available_cpus(), threads or 1
