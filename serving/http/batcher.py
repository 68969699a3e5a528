"""Cross-request batching: concurrent requests share one ONNX Runtime run.

Greedy, with no wait window: when the engine is idle a request runs at once; while it runs,
new requests queue and go together into the next run (up to `max_batch` rows). Under load
the batch grows by itself and an idle server adds no latency. A request is refused at once
with QueueFull (HTTP 503, with the seconds to wait) when the rows already queued ahead of it
would take more than `max_wait_s` to drain at the rate the queue recently drained, or pass
`max_queue`: an overloaded server says so instead of letting its clients time out.

A request may also ask for its rows encoded (`submit(..., encode=True)`): the batcher encodes
every such row of a run in one call, in its worker thread, right after the run. For PNGs that
is a vectorised batch encode instead of one small encode per request on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ServingError


class QueueFull(ServingError):
    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


RATE_SMOOTHING = 0.2  # weight of the newest run in the rows/s estimate


class Batcher:
    def __init__(self, run: Callable[[dict[str, np.ndarray]], np.ndarray], max_batch: int,
                 max_queue: int, on_batch: Callable[[int], None] | None = None, wait_s: float = 0.0,
                 encode: Callable[[np.ndarray], list] | None = None, max_wait_s: float = math.inf):
        self.run = run  # feeds (each (N, ...)) -> output (N, ...)
        self.encode = encode  # output rows (M, ...) -> M encoded items, for requests that ask
        self.max_batch = max_batch
        self.max_queue = max_queue  # rows waiting, beyond which requests are refused
        self.on_batch = on_batch  # called with each run's row count (a metric)
        self.wait_s = wait_s
        self.max_wait_s = max_wait_s  # seconds of queued work beyond which requests are refused
        self.rows_per_s: float | None = None  # the queue's recent drain rate, once one has run
        self._pending: deque[tuple[dict[str, np.ndarray], asyncio.Future, bool]] = deque()
        self._pending_rows = 0
        self._running_rows = 0  # the run in the engine now: queued requests wait for it too
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganserve-batcher")

    async def submit(self, feeds: dict[str, np.ndarray], encode: bool = False):
        """The output rows for these feeds; with encode=True, (rows, encoded rows)."""
        if encode and self.encode is None:
            raise ValueError("encode=True needs a Batcher made with an encode function")
        rows = len(next(iter(feeds.values())))
        if self._pending_rows + rows > self.max_queue:
            raise QueueFull(f"server busy: {self._pending_rows} images queued (limit {self.max_queue}); retry shortly")
        ahead = self._running_rows + self._pending_rows
        ahead_s = ahead / self.rows_per_s if self.rows_per_s else 0.0
        if ahead_s > self.max_wait_s:
            raise QueueFull(f"server busy: {ahead} images ahead, about {ahead_s:.0f} s of work (limit "
                            f"{self.max_wait_s:g} s, GANSERVE_MAX_QUEUE_SECONDS); retry in {math.ceil(ahead_s)} s",
                            retry_after_s=math.ceil(ahead_s))
        future = asyncio.get_running_loop().create_future()
        self._pending.append((feeds, future, encode))
        self._pending_rows += rows
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        handed_out_at = None  # when the last run's rows went out with more work waiting
        while self._pending:
            if self.wait_s:
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            rows = [len(next(iter(feeds.values()))) for feeds, _, _ in batch]
            merged = {key: np.concatenate([feeds[key] for feeds, _, _ in batch]) for key in batch[0][0]}
            wanted = np.repeat([encode for _, _, encode in batch], rows)  # rows to encode
            started, self._running_rows = time.perf_counter(), sum(rows)
            try:
                output, encoded = await loop.run_in_executor(self._executor, self._run_and_encode, merged, wanted)
            except Exception as error:  # hand the failure to every waiting request
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                handed_out_at = None
                continue
            finally:
                self._running_rows = 0
            # The rate a queued request really drains at: back to back, from one hand-out to the
            # next, so the event loop's share of the worker (parsing, refusing, answering) counts;
            # after an idle spell, this run alone.
            self._observe_rate(sum(rows), time.perf_counter() - (handed_out_at or started))
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
            handed_out_at = time.perf_counter() if self._pending else None

    def close(self) -> None:
        """Stop the worker thread once its last run is done (a version being unloaded)."""
        self._executor.shutdown(wait=False)

    def _run_and_encode(self, feeds: dict[str, np.ndarray], wanted: np.ndarray) -> tuple[np.ndarray, list]:
        output = self.run(feeds)
        encoded = self.encode(output[wanted]) if wanted.any() else []
        return output, encoded

    def _observe_rate(self, rows: int, seconds: float) -> None:
        rate = rows / max(seconds, 1e-6)
        self.rows_per_s = rate if self.rows_per_s is None else \
            (1 - RATE_SMOOTHING) * self.rows_per_s + RATE_SMOOTHING * rate

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
