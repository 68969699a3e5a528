"""A soak run: minutes of mixed load on one ganserve server, checked for errors, memory growth
and a steady tail (not a test; results/soak.json).

Five wrk processes at once, 64 connections in all, a fresh seed per request: generate n=1
(24), n=16 (8), a zip of 4 (8), score one image (16), interpolate 8 frames (8). After every
window: each worker's resident memory; errors, requests/s and p99 per route.

    python -m benchmarks.server.soak [--minutes 10] [--window 60] [--model default28]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

from benchmarks.common import WORK, parse_args, write_result
from benchmarks.models import http_models
from benchmarks.server.http_bench import PORTS, multipart_body, start_ganserve, wrk

BASE = f"http://127.0.0.1:{PORTS['ganserve']}"
MIX = {  # route: (url, body template, clients)
    "generate n=1": (f"{BASE}/generate", '{"seed": %d}', 24),
    "generate n=16": (f"{BASE}/generate", '{"seed": %d, "n": 16}', 8),
    "generate zip of 4": (f"{BASE}/generate", '{"seed": %d, "n": 4, "format": "zip"}', 8),
    "interpolate 8 frames": (f"{BASE}/interpolate", '{"seed_from": %d, "seed_to": 7, "frames": 8}', 8),
}


def worker_memory(server) -> list[float]:
    """Resident MB of each BentoML worker process."""
    workers = [p for p in psutil.Process(server.process.pid).children(recursive=True)
               if "--worker-id" in " ".join(p.cmdline())]
    return sorted(round(p.memory_info().rss / 2**20, 1) for p in workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window", type=int, default=60, help="seconds per measured window")
    parser.add_argument("--model", default="default28")
    parser.add_argument("--workers", type=int, default=2)
    args = parse_args(parser, minutes=0.1, window=3, workers=1)
    WORK.mkdir(parents=True, exist_ok=True)
    server = start_ganserve(http_models()[args.model](), args.workers, 1)
    try:
        score_file, score_type = multipart_body(httpx.post(f"{BASE}/generate", json={"seed": 1}).content)
        windows = []
        for index in range(max(1, round(args.minutes * 60 / args.window))):
            with ThreadPoolExecutor(max_workers=len(MIX) + 1) as pool:
                runs = {name: pool.submit(wrk, url, clients, args.window, body, threads=1)
                        for name, (url, body, clients) in MIX.items()}
                runs["score 1 image"] = pool.submit(wrk, f"{BASE}/score", 16, args.window, None, score_file,
                                                    score_type, 1)
                results = {name: future.result() for name, future in runs.items()}
            window = {"window": index, "rss_mb": worker_memory(server),
                      "routes": {name: {"requests_per_s": round(r["requests_per_s"], 1), "p99_ms": r["p99_ms"],
                                        "errors": r["errors"]} for name, r in results.items()}}
            windows.append(window)
            print(time.strftime("%H:%M:%S"), window, flush=True)
        warm = windows[0]["rss_mb"]
        growth = [round(max(w["rss_mb"][i] / warm[i] - 1 for i in range(len(warm))) * 100, 2) for w in windows]
        result = {"minutes": args.minutes, "window_s": args.window, "workers": args.workers, "model": args.model,
                  "clients": sum(c for *_, c in MIX.values()) + 16, "windows": windows,
                  "errors": sum(r["errors"] for w in windows for r in w["routes"].values()),
                  "rss_growth_percent_after_first_window": growth}
        write_result("soak", result)
        print("errors:", result["errors"], "rss growth % after the first window:", growth)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
