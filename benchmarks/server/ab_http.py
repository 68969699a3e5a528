"""Two source trees of ganserve served side by side, under the same load, interleaved: does a
change make serving slower? Each tree runs as `python -m serving.cli serve` with that tree
first on PYTHONPATH (the same venv, model, workers and threads), and every wrk run of one is
followed by the same run of the other.

    python -m benchmarks.server.ab_http --before /tmp/ganserve-before --after . --name ab-http

Writes results/NAME.json (rows like http_bench.py's, one per tree and setting, plus the
after/before ratio of requests/s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from benchmarks.common import WORK, parse_args, summary, write_result
from benchmarks.models import trained_dcgan28
from benchmarks.server.http_bench import Server, multipart_body, wrk

PORTS = {"before": 3121, "after": 3122}
ENDPOINTS = {
    "generate n=1": ("/generate", '{"seed": %d}', 1),
    "generate n=16": ("/generate", '{"seed": %d, "n": 16}', 16),
    "score 1 image": ("/score", None, 1),
}


def start(tree: Path, side: str, model_dir: Path, workers: int, threads: int) -> Server:
    port = PORTS[side]
    return Server(f"ab-{side}", [sys.executable, "-m", "serving.cli", "serve", str(model_dir), "--port", str(port),
                                 "--host", "127.0.0.1", "--workers", str(workers), "--threads", str(threads),
                                 "--device", "cpu"],
                  f"http://127.0.0.1:{port}/readyz", env={"PYTHONPATH": str(tree.resolve())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="source tree of the old code")
    parser.add_argument("--after", type=Path, required=True, help="source tree of the new code")
    parser.add_argument("--model", type=Path, help="model folder (default: the benchmarks' dcgan28)")
    parser.add_argument("--concurrency", default="8,32,128")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="ab-http")
    args = parse_args(parser, concurrency="8", endpoints=next(iter(ENDPOINTS)), seconds=2, repeats=1, workers=1)
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or trained_dcgan28()
    servers = {side: start(tree, side, model_dir, args.workers, args.threads)
               for side, tree in (("before", args.before), ("after", args.after))}
    try:
        for server in servers.values():
            server.wait_ready()
        png = httpx.post(f"http://127.0.0.1:{PORTS['after']}/generate", json={"seed": 1}).content
        score_file, score_type = multipart_body(png)
        rows = []
        for endpoint in args.endpoints.split(","):
            route, body, images = ENDPOINTS[endpoint]
            file = score_file if body is None else None
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                for _ in range(args.repeats):
                    for side in ("before", "after"):  # interleaved
                        url = f"http://127.0.0.1:{PORTS[side]}{route}"
                        runs[side].append(wrk(url, concurrency, args.seconds, body, file,
                                              score_type if file else None))
                medians = {}
                for side, results in runs.items():
                    rps = summary([r["requests_per_s"] for r in results])
                    medians[side] = rps["median"]
                    rows.append({"endpoint": endpoint, "tree": side, "concurrency": concurrency, "requests_per_s": rps,
                                 "images_per_s": images * rps["median"],
                                 "p50_ms": summary([r["p50_ms"] for r in results])["median"],
                                 "p99_ms": summary([r["p99_ms"] for r in results]),
                                 "errors": sum(r["errors"] for r in results)})
                    print(f"{endpoint:14} c={concurrency:<4} {side:7} {rps['median']:8.1f} req/s "
                          f"(min {rps['min']:.0f}, max {rps['max']:.0f})  p99 {rows[-1]['p99_ms']['median']:7.1f} ms  "
                          f"errors {rows[-1]['errors']}", flush=True)
                rows.append({"endpoint": endpoint, "concurrency": concurrency,
                             "after_vs_before": round(medians["after"] / medians["before"], 3)})
        write_result(args.name, {"settings": {k: str(v) for k, v in vars(args).items()}, "model": model_dir.name,
                                 "rows": rows})
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
