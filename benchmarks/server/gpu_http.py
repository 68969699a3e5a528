"""HTTP on a GPU machine, in one go: `ganserve serve` on CUDA (the GPU layout: padded batch
sizes, several workers) against the same machine's CPU layout and against Triton running the
same generator.onnx on CUDA (peers/triton_cuda_server.py), for each model given; `generate`
n=1 at 32 and 128 clients and n=16, under wrk. Not part of `make bench`.

Targets (#13): n=1 at 32 clients >= 2x the same machine's CPU layout; n=16 >= 20,000 images/s;
p99 <= 30 ms at 32 clients. The summary says which were met, and records the server's CPU
per request and mean batch, which show what limited the rest.

    python -m benchmarks.server.gpu_http MODEL_DIR [MODEL_DIR ...] [--layouts cuda:0,cpu:0,triton-cuda:4] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx

from benchmarks.common import WORK, parse_args, write_result
from benchmarks.server.http_bench import TRITON_BODY, TRITON_VENV, Server, wrk

HERE = Path(__file__).resolve().parent
PORT, TRITON_PORT = 3201, 8700
BODIES = {"generate n=1": ('{"seed": %d}', 1), "generate n=16": ('{"seed": %d, "n": 16}', 16)}


def serve(model_dir: Path, layout: str) -> tuple[Server, str]:
    """(server, its /generate-like URL) for DEVICE:WORKERS, or triton-cuda:INSTANCES."""
    kind, count = layout.split(":")
    if kind == "triton-cuda":
        python = os.environ.get("GANSERVE_TRITON_PYTHON", str(TRITON_VENV / "bin" / "python"))
        server = Server(f"gpu-http-{layout}", [python, str(HERE / "peers" / "triton_cuda_server.py"),
                                               str(model_dir.resolve()), "--http-port", str(TRITON_PORT),
                                               "--instances", count, "--require-cuda"],
                        f"http://127.0.0.1:{TRITON_PORT}/v2/models/gen/ready")
        return server, f"http://127.0.0.1:{TRITON_PORT}/v2/models/gen/infer"
    server = Server(f"gpu-http-{layout}", [sys.executable, "-m", "serving.cli", "serve", str(model_dir.resolve()),
                                           "--port", str(PORT), "--host", "127.0.0.1", "--device", kind,
                                           "--workers", count], f"http://127.0.0.1:{PORT}/readyz")
    return server, f"http://127.0.0.1:{PORT}/generate"


def model_card(timeout: float = 60) -> dict:
    """/model once it answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        response = httpx.post(f"http://127.0.0.1:{PORT}/model", json={}, timeout=10)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.5)
    raise RuntimeError(f"/model never answered 200: {response.text[:200]}")


def targets(rows: list[dict]) -> list[dict]:
    """#13's GPU targets, per model, from the measured rows."""
    found = []
    for model in dict.fromkeys(r["model"] for r in rows if "error" not in r):
        def rate(layout_kind, endpoint, clients, key="requests_per_s", model=model):
            hits = [r for r in rows if r.get("model") == model and r["layout"].startswith(layout_kind)
                    and r.get("endpoint") == endpoint and r.get("concurrency") == clients]
            return (hits[0][key], hits[0]) if hits else (None, None)

        gpu32, gpu_row = rate("cuda", "generate n=1", 32)
        cpu32, _ = rate("cpu", "generate n=1", 32)
        n16 = max((r["images_per_s"] for r in rows if r.get("model") == model and r["layout"].startswith("cuda")
                   and r.get("endpoint") == "generate n=16"), default=None)
        found.append({"model": model,
                      "n1_c32_vs_cpu_layout": round(gpu32 / cpu32, 2) if gpu32 and cpu32 else None,
                      "n1_c32_vs_cpu_met": bool(gpu32 and cpu32 and gpu32 >= 2 * cpu32),
                      "n16_images_per_s": n16, "n16_met": bool(n16 and n16 >= 20_000),
                      "p99_c32_ms": gpu_row["p99_ms"] if gpu_row else None,
                      "p99_met": bool(gpu_row and gpu_row["p99_ms"] <= 30)})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="model folders (e.g. default28 and dcgan64rgb)")
    parser.add_argument("--layouts", default="cuda:0,cpu:0,triton-cuda:4",
                        help="DEVICE:WORKERS (0: serve's default layout) or triton-cuda:INSTANCES")
    parser.add_argument("--concurrency", default="32,128")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--wrk-threads", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parse_args(parser, layouts="cpu:1", concurrency="8", seconds=2)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for model_dir in args.models:
        for layout in args.layouts.split(","):
            server, url = serve(model_dir, layout)
            triton = layout.startswith("triton")
            try:
                ready_s = server.wait_ready()
                card = {"provider": "triton (see its log)", "precision": "fp32"} if triton else model_card()
                bodies = {"generate n=1": (TRITON_BODY, 1)} if triton else BODIES
                wrk(url, 32, 2, bodies["generate n=1"][0], threads=args.wrk_threads)  # warm every worker
                for endpoint, (body, images) in bodies.items():
                    for concurrency in [int(c) for c in args.concurrency.split(",")]:
                        before = server.cpu_seconds()
                        result = wrk(url, concurrency, args.seconds, body, threads=args.wrk_threads)
                        cpu = (server.cpu_seconds() - before) / max(result["requests"], 1) * 1e6
                        row = {"model": model_dir.name, "layout": layout, "provider": card["provider"],
                               "precision": card["precision"], "endpoint": endpoint, "concurrency": concurrency,
                               "seconds_to_ready": round(ready_s, 1), **result,
                               "images_per_s": images * result["requests_per_s"], "cpu_us_per_request": round(cpu)}
                        rows.append(row)
                        print(f"{model_dir.name:10} {layout:14} {row['provider']} {endpoint:14} c={concurrency:<4} "
                              f"{result['requests_per_s']:8.0f} req/s  {row['images_per_s']:8.0f} img/s  "
                              f"p99 {result['p99_ms']:6.1f} ms  cpu {cpu:6.0f} us/req  errors {result['errors']}",
                              flush=True)
            except RuntimeError as error:  # recorded; the other layouts still run
                print(f"{model_dir.name} {layout}: {error}", flush=True)
                rows.append({"model": model_dir.name, "layout": layout, "error": str(error)})
            finally:
                server.stop()
            write_result("gpu-http", {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                      "targets": targets(rows)}, args.out)  # a cut-short run keeps its rows
    for target in targets(rows):
        print(target)


if __name__ == "__main__":
    main()
