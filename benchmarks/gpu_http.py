"""HTTP on a GPU machine: `ganserve serve` on CUDA with 1, 4 and 8 workers, and the CPU layout
(one single-threaded worker per core) on the same machine, under wrk. Not part of `make bench`.

One BentoML worker is one event loop, and it spends about half a millisecond of CPU per
request (benchmarks/README.md), so this measures how many workers it takes to keep a GPU busy
rather than waiting on HTTP.

    python benchmarks/gpu_http.py MODEL_DIR [--layouts cuda:1,cuda:4,cuda:8,cpu:0] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from common import WORK, write_result
from http_bench import Server, wrk

PORT = 3201
BODIES = {"generate n=1": ('{"seed": %d}', 1), "generate n=16": ('{"seed": %d, "n": 16}', 16)}


def serve(model_dir: Path, device: str, workers: int) -> Server:
    name = f"gpu-http-{device}-{workers}"
    return Server(name, [sys.executable, "-m", "serving.cli", "serve", str(model_dir.resolve()), "--port", str(PORT),
                         "--host", "127.0.0.1", "--device", device, "--workers", str(workers)],
                  f"http://127.0.0.1:{PORT}/readyz")


def model_card(timeout: float = 60) -> dict:
    """/model once it answers 200 (a server whose /readyz spoke for one worker only could
    still send this to a worker that was warming up)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        response = httpx.post(f"http://127.0.0.1:{PORT}/model", json={}, timeout=10)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.5)
    raise RuntimeError(f"/model never answered 200: {response.text[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--layouts", default="cuda:1,cuda:4,cuda:8,cpu:0", help="DEVICE:WORKERS list (0: default)")
    parser.add_argument("--concurrency", default="32,128")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--wrk-threads", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{PORT}/generate"
    rows = []
    for layout in args.layouts.split(","):
        device, workers = layout.split(":")
        server = serve(args.model_dir, device, int(workers))
        try:
            ready_s = server.wait_ready()
            model = model_card()
            wrk(url, 32, 2, BODIES["generate n=1"][0], threads=args.wrk_threads)  # warm every worker
            for endpoint, (body, images) in BODIES.items():
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    result = wrk(url, concurrency, args.seconds, body, threads=args.wrk_threads)
                    row = {"layout": layout, "provider": model["provider"], "precision": model["precision"],
                           "endpoint": endpoint, "concurrency": concurrency, "seconds_to_ready": round(ready_s, 1),
                           **result, "images_per_s": images * result["requests_per_s"]}
                    rows.append(row)
                    print(f"{layout:7} {row['provider']} {endpoint:14} c={concurrency:<4} "
                          f"{result['requests_per_s']:8.0f} req/s  {row['images_per_s']:8.0f} img/s  "
                          f"p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}", flush=True)
        except RuntimeError as error:  # recorded; the other layouts still run
            print(f"{layout}: {error}", flush=True)
            rows.append({"layout": layout, "error": str(error)})
        finally:
            server.stop()
        write_result("gpu-http", {"model": args.model_dir.name, "settings": {k: str(v) for k, v in vars(args).items()},
                                  "rows": rows}, args.out)  # after each layout: a cut-short run keeps its rows


if __name__ == "__main__":
    main()
