"""Overload: an open-loop load at 4x the rate the server sustains, then back down (not a test;
results/overload.json).

The sustainable rate R is measured first: wrk, 32 connections, `generate` n=1, zero errors.
Then an open-loop client sends requests on a fixed schedule whatever the answers, each with a
fresh random seed: BASE seconds at 0.5 R, OVER seconds at FACTOR x R, RECOVER seconds at 0.5 R.
A server that queues without bound times its clients out; ganserve should answer the excess
503 at once with Retry-After, keep the accepted requests' wait near GANSERVE_MAX_QUEUE_SECONDS,
and come back to its baseline latency once the load drops. Latency is counted from the moment
a request was due to be sent, so a client falling behind cannot hide a slow server.

    python -m benchmarks.server.overload [--model dcgan64rgb] [--factor 4] [--queue-seconds 10] [--name overload]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections import Counter

import aiohttp

from benchmarks.common import parse_args, quick, write_result
from benchmarks.models import http_models
from benchmarks.server.http_bench import PORTS, start_ganserve, wrk

URL = f"http://127.0.0.1:{PORTS['ganserve']}/generate"
CLIENT_TIMEOUT_S = 30


async def _one(session: aiohttp.ClientSession, due: float, record: list) -> None:
    seed = random.getrandbits(62)
    try:
        async with session.post(URL, json={"seed": seed}) as response:
            await response.read()
            record.append((due, response.status, time.perf_counter() - due, response.headers.get("Retry-After")))
    except TimeoutError:
        record.append((due, "timeout", time.perf_counter() - due, None))
    except aiohttp.ClientError as error:
        record.append((due, type(error).__name__, time.perf_counter() - due, None))


async def open_loop(phases: list[tuple[float, float]]) -> tuple[list, float]:
    """Send at each phase's rate (requests/s) for its seconds; every request's (due time,
    status, latency, Retry-After), and the start time."""
    record: list = []
    # Idle connections are closed before the server's keep-alive timeout (uvicorn's 5 s) would
    # close them under the client: a well-configured client, not a race on reuse.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)) as session:
        start = time.perf_counter()
        due, tasks = start, []
        for rate, seconds in phases:
            end = due + seconds
            while due < end:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_one(session, due, record)))
                due += 1 / rate
        await asyncio.gather(*tasks)
    return record, start


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def describe(rows: list) -> dict:
    """Counts by status and latency percentiles (ms) of one slice of the run."""
    ok = [latency for _, status, latency, _ in rows if status == 200]
    refused = [latency for _, status, latency, _ in rows if status == 503]
    statuses = Counter(str(status) for _, status, _, _ in rows)
    retry_after = sorted({int(value) for _, status, _, value in rows if status == 503 and value})
    return {"requests": len(rows), "statuses": dict(statuses),
            "ok_p50_ms": _percentile(ok, 0.5), "ok_p99_ms": _percentile(ok, 0.99),
            "refused_p50_ms": _percentile(refused, 0.5), "refused_p99_ms": _percentile(refused, 0.99),
            "retry_after_s": retry_after}


def per_second(rows: list, start: float) -> list[dict]:
    """The run second by second (by when each request was due): what a dashboard would show."""
    seconds: dict[int, list] = {}
    for row in rows:
        seconds.setdefault(int(row[0] - start), []).append(row)
    return [{"second": s, "ok": sum(r[1] == 200 for r in rows_), "refused": sum(r[1] == 503 for r in rows_),
             "other": sum(r[1] not in (200, 503) for r in rows_),
             "ok_p99_ms": _percentile([r[2] for r in rows_ if r[1] == 200], 0.99)}
            for s, rows_ in sorted(seconds.items())]


def recovery_seconds(timeline: list[dict], drop_at: float, baseline_p99_ms: float, window: int = 5) -> float | None:
    """Seconds after the load dropped until no request is refused or fails any more and the
    accepted ones' p99, over `window` seconds, is back within twice the baseline's."""
    after = [t for t in timeline if t["second"] >= drop_at]
    for index, entry in enumerate(after):
        calm = all(t["refused"] == 0 and t["other"] == 0 for t in after[index:])
        settled = all((t["ok_p99_ms"] or 0) <= 2 * baseline_p99_ms for t in after[index:index + window])
        if calm and settled:
            return entry["second"] - drop_at
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dcgan64rgb", help="a compute-heavy model keeps the client's share small")
    parser.add_argument("--factor", type=float, default=4.0, help="the overload, as a multiple of the sustainable rate")
    parser.add_argument("--base", type=float, default=15, help="seconds at half the sustainable rate first")
    parser.add_argument("--over", type=float, default=30, help="seconds of overload")
    parser.add_argument("--recover", type=float, default=45, help="seconds at half the sustainable rate after")
    parser.add_argument("--queue-seconds", type=int, default=10, help="GANSERVE_MAX_QUEUE_SECONDS for the server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="overload", help="results/NAME.json")
    args = parse_args(parser, model="default28", base=2, over=2, recover=2, workers=1, factor=1.5)
    os.environ["GANSERVE_MAX_QUEUE_SECONDS"] = str(args.queue_seconds)
    server = start_ganserve(http_models()[args.model](), args.workers, 1)
    try:
        warm_s, sustained_s = (1, 2) if quick() else (5, 10)
        wrk(URL, 32, warm_s, '{"seed": %d}')  # warm-up
        sustained = wrk(URL, 32, sustained_s, '{"seed": %d}')
        assert sustained["errors"] == 0, sustained
        rate = sustained["requests_per_s"]
        phases = [(rate / 2, args.base), (rate * args.factor, args.over), (rate / 2, args.recover)]
        print(f"sustainable: {rate:.0f} requests/s; phases (requests/s, s): "
              f"{[(round(r), s) for r, s in phases]}", flush=True)
        rows, start = asyncio.run(open_loop(phases))
    finally:
        server.stop()
    over_from, drop_at = args.base, args.base + args.over
    slices = {"base": [r for r in rows if r[0] - start < over_from],
              "overload": [r for r in rows if over_from <= r[0] - start < drop_at],
              "after": [r for r in rows if r[0] - start >= drop_at]}
    figures = {name: describe(part) for name, part in slices.items()}
    timeline = per_second(rows, start)
    baseline_p99 = figures["base"]["ok_p99_ms"]
    result = {"model": args.model, "workers": args.workers, "queue_seconds": args.queue_seconds,
              "factor": args.factor, "sustainable_requests_per_s": round(rate, 1),
              "sustainable_p99_ms": sustained["p99_ms"],
              "phases": [{"requests_per_s": round(r, 1), "seconds": s} for r, s in phases],
              **figures, "recovery_s": recovery_seconds(timeline, drop_at, baseline_p99),
              "ok_per_s_in_overload": round(figures["overload"]["statuses"].get("200", 0) / args.over, 1),
              "timeline": timeline}
    path = write_result(args.name, result)
    for name in slices:
        print(name, figures[name])
    print("recovery:", result["recovery_s"], "s; served during overload:", result["ok_per_s_in_overload"],
          "requests/s; mean latency of everything:", round(statistics.mean(r[2] for r in rows) * 1000), "ms")
    print("wrote", path)


if __name__ == "__main__":
    main()
