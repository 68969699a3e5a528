"""Service settings, from environment variables (so `ganserve serve`, a bento and a container
are configured the same way)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_MODEL_TAG = "ganserve-digits:latest"


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


@dataclass(frozen=True)
class Settings:
    model: str  # a model folder path or a BentoML model tag
    device: str  # auto | cpu | cuda | tensorrt
    max_images: int  # most images one generate request may ask for
    max_score_images: int  # most images one score request may send
    max_batch: int  # most rows in one ONNX Runtime run (64: past it, per-image speed drops on CPU)
    max_queue: int  # rows waiting before requests are refused with 503
    batch_wait_ms: int  # extra wait to grow batches (0: greedy, no added latency)
    threads: int  # ONNX Runtime intra-op threads per worker (0: its default)
    workers: int  # service worker processes
    max_body_bytes: int  # request body limit (413 beyond)
    access_log: bool

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model=os.environ.get("GANSERVE_MODEL", DEFAULT_MODEL_TAG),
            device=os.environ.get("GANSERVE_DEVICE", "auto"),
            max_images=_int("GANSERVE_MAX_IMAGES", 64),
            max_score_images=_int("GANSERVE_MAX_SCORE_IMAGES", 256),
            max_batch=_int("GANSERVE_MAX_BATCH", 64),
            max_queue=_int("GANSERVE_MAX_QUEUE", 8192),
            batch_wait_ms=_int("GANSERVE_BATCH_WAIT_MS", 0, low=0),
            threads=_int("GANSERVE_THREADS", 0, low=0),
            workers=_int("GANSERVE_WORKERS", 1),
            max_body_bytes=_int("GANSERVE_MAX_BODY_BYTES", 32 * 1024 * 1024),
            access_log=os.environ.get("GANSERVE_ACCESS_LOG", "0") == "1",
        )
