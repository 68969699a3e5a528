"""One ONNX graph opened for a device, behind one call: `run(feeds)`.

`run` takes feeds of any number of rows and returns the graph's first output for all of them.
Inside, it:
- runs chunks of at most `max_batch` rows (bounded memory per run);
- on a multi-core CPU, splits batches of SPLIT_MIN_ROWS or more into short runs on a
  single-threaded twin session, taken by whichever core is free (ConvTranspose parallelises
  poorly inside one ONNX Runtime run: split batches ran 8-21% faster, benchmarks/README.md);
- on a GPU, pads each run to one of a few batch sizes, all warmed up at start, since every new
  shape costs a cuDNN algorithm search or a TensorRT engine build; and binds the output to
  host memory, so ONNX Runtime copies device -> host once, into the array it returns.
Every output row depends only on its own input row, so none of this changes a value.
"""

from __future__ import annotations

import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .cpus import available_cpus
from .providers import CPU, usable_providers

SPLIT_MIN_ROWS = 8  # from here on, splitting a batch across cores beat intra-operator threads
# Rows per run on each core's twin: two cores sharing one cache ran dcgan28's G 8-13% faster
# in runs of 16 than in one run per core at batch 64-256 (activations stay in cache); dcgan64: flat.
SPLIT_RUN_ROWS = 16


class Graph:
    def __init__(self, path: Path, device: str, threads: int | None = None, max_batch: int = 256,
                 pad_batches: bool | None = None):
        providers = usable_providers(device)
        self.path, self.max_batch = path, max_batch
        self.session = open_session(path, providers, threads)
        self.provider = self.session.get_providers()[0]
        self.pad_batches = self.provider != CPU if pad_batches is None else pad_batches
        self._output = self.session.get_outputs()[0].name
        self._split_ways = (threads or available_cpus()) if self.provider == CPU else 1
        self._twin = open_session(path, providers, 1) if self._split_ways > 1 else None
        self._pool = ThreadPoolExecutor(self._split_ways, thread_name_prefix="ganserve-graph") if self._twin else None

    @property
    def splits_batches(self) -> bool:
        return self._twin is not None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for every row of `feeds` (each (N, ...), N >= 1)."""
        count = len(next(iter(feeds.values())))
        if self._twin is not None and count >= SPLIT_MIN_ROWS:
            # Short runs taken by whichever thread is free, not one fixed share per core: a
            # thread the OS delays (the sampler's writers share the cores) then takes fewer runs
            # instead of holding up the whole batch. At least one run per core; never empty.
            rows = min(self.max_batch, SPLIT_RUN_ROWS, math.ceil(count / self._split_ways))
            parts = self._pool.map(lambda start: self._run_once(self._twin, _rows(feeds, start, rows)),
                                   range(0, count, rows))
            return np.concatenate(list(parts))
        return self._serial(feeds)

    def _serial(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(feeds.values())))
        parts = [self._run_once(self.session, _rows(feeds, start, self.max_batch))
                 for start in range(0, count, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run_once(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(feeds.values())))
        if self.pad_batches:
            feeds = pad_rows(feeds, bucket_rows(count, self.max_batch))
        if self.provider == CPU:
            return session.run(None, feeds)[0][:count]
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(self._output, "cpu")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0][:count]

    def warm_up_sizes(self) -> list[int]:
        """Batch sizes to run once before serving: on CUDA every padded size (cuDNN searches per
        shape); TensorRT widens one engine's shape range, so 1 and a full chunk cover it."""
        if self.pad_batches and self.provider == "CUDAExecutionProvider":
            return list(batch_buckets(self.max_batch))
        return sorted({1, min(self.max_batch, 64)})

    def close(self) -> None:
        """Stop the split runs' threads; the sessions are freed with the last reference."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool, self._twin = None, None

    def keep_split_if_faster(self, feeds: dict[str, np.ndarray]) -> None:
        """Tiny graphs (the mlp) lose more to thread hand-offs than they gain from more cores:
        keep the twin only if split runs beat one serial run on these feeds."""
        if self._twin is None:
            return
        serial = _best_of_three(lambda: self._serial(feeds))
        split = _best_of_three(lambda: self.run(feeds))
        if split > 0.95 * serial:
            self._twin = None
            self._pool.shutdown(wait=False)
            self._pool = None


def open_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def _rows(feeds: dict[str, np.ndarray], start: int, count: int) -> dict[str, np.ndarray]:
    return {name: value[start:start + count] for name, value in feeds.items()}


def _best_of_three(run) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


@functools.cache
def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """The batch sizes padded runs use: powers of two below max_batch, and max_batch."""
    return tuple(sorted({1 << power for power in range(max_batch.bit_length()) if 1 << power < max_batch}
                        | {max_batch}))


def bucket_rows(count: int, max_batch: int) -> int:
    """The smallest bucket that holds `count` rows (count <= max_batch)."""
    return next(size for size in batch_buckets(max_batch) if size >= count)


def pad_rows(feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Feeds grown to `rows` rows by repeating their first row (always a valid input); every
    output row depends only on its own input row, so the real rows come out unchanged."""
    count = len(next(iter(feeds.values())))
    if rows <= count:
        return feeds
    return {name: np.concatenate([value, np.repeat(value[:1], rows - count, axis=0)]) for name, value in feeds.items()}
