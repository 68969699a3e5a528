"""The cross-request batcher: concurrent requests share runs, each gets its own rows back, rows
asked for encoded are encoded once per run, and a full queue is refused at once."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serving.http.batcher import Batcher, QueueFull


class Recorder:
    """A run that doubles its input, slowly enough for requests to queue behind it."""

    def __init__(self):
        self.runs: list[int] = []
        self.encoded: list[list[float]] = []
        self.release = threading.Event()

    def run(self, feeds):
        self.release.wait(5)
        self.runs.append(len(feeds["x"]))
        return feeds["x"] * 2

    def encode(self, rows):
        self.encoded.append(rows.tolist())
        return [f"<{value:g}>" for value in rows]


def _feeds(*values):
    return {"x": np.asarray(values, np.float64)}


async def _submit_together(batcher, recorder, requests):
    """Submit the first request, let it start running, queue the rest behind it, then release."""
    first = asyncio.ensure_future(batcher.submit(*requests[0]))
    await asyncio.sleep(0.05)  # the first run has started and waits on `release`
    rest = [asyncio.ensure_future(batcher.submit(*request)) for request in requests[1:]]
    await asyncio.sleep(0.05)
    recorder.release.set()
    return await asyncio.gather(first, *rest)


def test_queued_requests_share_one_run_and_get_their_own_rows():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=64, max_queue=100)
    results = asyncio.run(_submit_together(batcher, recorder, [(_feeds(1),), (_feeds(2, 3),), (_feeds(4),)]))
    assert [r.tolist() for r in results] == [[2], [4, 6], [8]]
    assert recorder.runs == [1, 3]  # the first alone, the two queued behind it together


def test_rows_asked_for_encoded_are_encoded_once_per_run():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=64, max_queue=100, encode=recorder.encode)
    requests = [(_feeds(1), True), (_feeds(2, 3), True), (_feeds(4),), (_feeds(5), True)]
    first, second, plain, last = asyncio.run(_submit_together(batcher, recorder, requests))
    assert first[0].tolist() == [2] and first[1] == ["<2>"]
    assert second[0].tolist() == [4, 6] and second[1] == ["<4>", "<6>"]
    assert plain.tolist() == [8]  # not asked: rows only, and not encoded
    assert last[0].tolist() == [10] and last[1] == ["<10>"]
    assert recorder.runs == [1, 4] and recorder.encoded == [[2.0], [4.0, 6.0, 10.0]]


def test_a_request_that_went_away_does_not_shift_the_others_rows():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=64, max_queue=100, encode=recorder.encode)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(_feeds(1), True))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(_feeds(2, 3), True))
        kept = asyncio.ensure_future(batcher.submit(_feeds(4), True))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client disconnected while queued
        recorder.release.set()
        return await first, await kept

    first, kept = asyncio.run(scenario())
    assert first[1] == ["<2>"] and kept[0].tolist() == [8] and kept[1] == ["<8>"]


def test_a_full_queue_is_refused_at_once_and_encode_needs_an_encoder():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=64, max_queue=3)

    async def scenario():
        running = asyncio.ensure_future(batcher.submit(_feeds(1)))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit(_feeds(2, 3, 4)))  # 3 rows wait: the limit
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="3 images queued"):
            await batcher.submit(_feeds(5))
        with pytest.raises(ValueError, match="encode function"):
            await batcher.submit(_feeds(6), True)
        recorder.release.set()
        return await running, await queued

    running, queued = asyncio.run(scenario())
    assert running.tolist() == [2] and queued.tolist() == [4, 6, 8]


def test_work_queued_beyond_max_wait_is_refused_with_the_seconds_to_wait():
    """The rate comes from the runs themselves: 4 rows took about 0.4 s, so the 4 rows running
    and the 10 queued ahead are about 1.4 s of work, over a limit of half a second."""
    import time

    def slow(feeds):
        time.sleep(0.1 * len(feeds["x"]))
        return feeds["x"]

    batcher = Batcher(slow, max_batch=4, max_queue=100, max_wait_s=0.5)

    async def scenario():
        await batcher.submit(_feeds(1, 2, 3, 4))  # measures the rate: about 10 rows/s
        running = asyncio.ensure_future(batcher.submit(_feeds(*range(4))))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit(_feeds(*range(10))))  # ahead of it: nothing queued yet
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match=r"14 images ahead, about 1 s of work \(limit 0.5 s") as refused:
            await batcher.submit(_feeds(5))
        await asyncio.gather(running, queued)
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.retry_after_s == 2  # about 1.4 s, rounded up
    assert 8 < batcher.rows_per_s < 11
