"""One ONNX graph on OpenVINO's CPU plugin, behind the same call as `graph.Graph`: `run(feeds)`.

OpenVINO reads the model folder's own .onnx files; nothing is converted on disk. Its CPU plugin
computes in bfloat16 where the CPU has it natively (AMX, AVX-512 BF16) unless told float32
(`precision="fp32"`), which is what makes it faster than ONNX Runtime for compute-heavy
graphs, at the cost of a few pixel levels (serving/runtime/engines.py measures and bounds
both). Each row still depends only on its own input row, and the same input gives the same
bytes on every run and at every thread count (tests/serving/runtime/test_engines.py).

`openvino` is an optional extra (`pip install 'ganserve[openvino]'`): imported only here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .cpus import available_cpus

PROVIDER = "OpenVINO CPU"
HINTS = {"bf16": "bf16", "fp32": "f32"}


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    import openvino

    return openvino.__version__.split("-")[0]


class OpenVinoGraph:
    splits_batches = False  # OpenVINO spreads a run over its own threads
    pad_batches = False

    def __init__(self, path: Path, precision: str, threads: int | None = None, max_batch: int = 256):
        import openvino as ov

        self.path, self.precision, self.max_batch = path, precision, max_batch
        self.provider = PROVIDER
        core = ov.Core()
        # No pinning: OpenVINO binds its threads to cores counted from the first, so a server's
        # worker processes would all compute on the same core (measured: two workers at half
        # speed each); the OS spreads them as it does ONNX Runtime's.
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads or available_cpus(),
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False})
        self._requests = threading.local()  # an infer request is not shared between threads

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for every row of `feeds` (each (N, ...), N >= 1)."""
        count = len(next(iter(feeds.values())))
        parts = [self._run_once({name: value[start:start + self.max_batch] for name, value in feeds.items()})
                 for start in range(0, count, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run_once(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        return request.infer(feeds)[0].copy()  # the request reuses its output buffer

    def warm_up_sizes(self) -> list[int]:
        return sorted({1, min(self.max_batch, 64)})

    def keep_split_if_faster(self, feeds: dict[str, np.ndarray]) -> None:
        """Nothing to split (the interface of graph.Graph)."""

    def close(self) -> None:
        self._requests = threading.local()
