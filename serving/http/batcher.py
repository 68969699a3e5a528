"""Cross-request batching: concurrent requests share one ONNX Runtime run.

Greedy, with no wait window: when the engine is idle a request runs at once; while it runs,
new requests queue and go together into the next run (up to `max_batch` rows). Under load
the batch grows by itself and an idle server adds no latency. A full queue answers at once
with QueueFull (HTTP 503) instead of letting clients time out.

A request may also ask for its rows encoded (`submit(..., encode=True)`): the batcher encodes
every such row of a run in one call, in its worker thread, right after the run. For PNGs that
is a vectorised batch encode instead of one small encode per request on the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ServingError


class QueueFull(ServingError):
    status_code = 503


class Batcher:
    def __init__(self, run: Callable[[dict[str, np.ndarray]], np.ndarray], max_batch: int,
                 max_queue: int, on_batch: Callable[[int], None] | None = None, wait_s: float = 0.0,
                 encode: Callable[[np.ndarray], list] | None = None):
        self.run = run  # feeds (each (N, ...)) -> output (N, ...)
        self.encode = encode  # output rows (M, ...) -> M encoded items, for requests that ask
        self.max_batch = max_batch
        self.max_queue = max_queue  # rows waiting, beyond which requests are refused
        self.on_batch = on_batch  # called with each run's row count (a metric)
        self.wait_s = wait_s
        self._pending: deque[tuple[dict[str, np.ndarray], asyncio.Future, bool]] = deque()
        self._pending_rows = 0
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganserve-batcher")

    async def submit(self, feeds: dict[str, np.ndarray], encode: bool = False):
        """The output rows for these feeds; with encode=True, (rows, encoded rows)."""
        if encode and self.encode is None:
            raise ValueError("encode=True needs a Batcher made with an encode function")
        rows = len(next(iter(feeds.values())))
        if self._pending_rows + rows > self.max_queue:
            raise QueueFull(f"server busy: {self._pending_rows} images queued (limit {self.max_queue}); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((feeds, future, encode))
        self._pending_rows += rows
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if self.wait_s:
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            rows = [len(next(iter(feeds.values()))) for feeds, _, _ in batch]
            merged = {key: np.concatenate([feeds[key] for feeds, _, _ in batch]) for key in batch[0][0]}
            wanted = np.repeat([encode for _, _, encode in batch], rows)  # rows to encode
            try:
                output, encoded = await loop.run_in_executor(self._executor, self._run_and_encode, merged, wanted)
            except Exception as error:  # hand the failure to every waiting request
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            if self.on_batch:
                self.on_batch(sum(rows))
            start, encoded_rows = 0, iter(encoded)
            for (_, future, encode), count in zip(batch, rows):
                result = output[start:start + count]
                if encode:
                    result = (result, [next(encoded_rows) for _ in range(count)])
                if not future.done():  # the client may have gone away
                    future.set_result(result)
                start += count

    def _run_and_encode(self, feeds: dict[str, np.ndarray], wanted: np.ndarray) -> tuple[np.ndarray, list]:
        output = self.run(feeds)
        return output, (self.encode(output[wanted]) if wanted.any() else [])

    def _take(self) -> list[tuple[dict[str, np.ndarray], asyncio.Future, bool]]:
        """Whole requests, oldest first, up to max_batch rows (at least one request)."""
        batch, rows = [], 0
        while self._pending:
            feeds, future, encode = self._pending[0]
            count = len(next(iter(feeds.values())))
            if batch and (rows + count > self.max_batch or feeds.keys() != batch[0][0].keys()):
                break
            self._pending.popleft()
            self._pending_rows -= count
            batch.append((feeds, future, encode))
            rows += count
        return batch
