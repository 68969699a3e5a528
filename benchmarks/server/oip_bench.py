"""ganserve and Triton measured by one client with the very same Open Inference Protocol
requests: the fairest comparison the field has.

Both servers run the same generator.onnx on ONNX Runtime, one single-threaded session per CPU
(ganserve: its workers; Triton: the peer's instances behind its dynamic batcher,
peers/triton_oip_server.py). wrk sends both the same body (`oip.lua`: SEED INT64 [rows, 1] with
fresh seeds every request, IMAGE asked for as binary) to /v2/models/NAME/infer, interleaved
within each repeat. ganserve's native /generate (format npy, the same pixels) is measured beside
them, to show what the protocol costs ganserve. (Triton's perf_analyzer would be the natural
client; its PyPI name is a 0.1.0 placeholder on this platform, so wrk with one script it is.)

    python -m benchmarks.server.oip_bench [--concurrency 8,32,128] [--rows 1,16] [--quick]

Writes results/oip-triton.json. Needs wrk, and the Triton venv (made on first use, as
http_bench.py makes it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import WORK, parse_args, summary, write_result
from benchmarks.models import trained_default28
from benchmarks.server.http_bench import Server, triton_python, wrk

HERE = Path(__file__).resolve().parent
PEER = HERE / "peers" / "triton_oip_server.py"
PORTS = {"ganserve": 3131, "triton": 8710}
NATIVE = '{"seed": %d, "format": "npy"}'


def start(model_dir: Path, workers: int) -> dict[str, Server]:
    """ganserve, then the Triton peer: one at a time, so neither loads its models while the other
    takes the cores."""
    python = triton_python()
    ganserve = Server("oip-ganserve", [str(Path(sys.executable).parent / "ganserve"), "serve", str(model_dir),
                                       "--port", str(PORTS["ganserve"]), "--host", "127.0.0.1", "--workers",
                                       str(workers), "--threads", "1", "--device", "cpu"],
                      f"http://127.0.0.1:{PORTS['ganserve']}/readyz")
    try:
        ganserve.wait_ready()
        return {"ganserve": ganserve, "triton": start_oip_peer(python, model_dir, workers)}
    except Exception:
        ganserve.stop()
        raise


def start_oip_peer(python: Path, model_dir: Path, instances: int, attempts: int = 2) -> Server:
    """The peer, tried twice: PyTriton gives each instance's Python stub one second to reach the
    model's process (its handshake), which a busy 2-core machine can miss, and Triton then exits.
    A retry is printed with the first try's log, never silent."""
    name = model_dir.name
    command = [str(python), str(PEER), str(model_dir), "--name", name, "--http-port", str(PORTS["triton"]),
               "--instances", str(instances)]
    for attempt in range(1, attempts + 1):
        server = Server("oip-triton", command, f"http://127.0.0.1:{PORTS['triton']}/v2/models/{name}/ready")
        try:
            server.wait_ready()
            return server
        except RuntimeError as error:
            server.stop()
            if attempt == attempts:
                raise
            print(f"the Triton peer did not start, trying again: {error}", flush=True)


def same_pixels(name: str) -> bool:
    """Both servers give the same IMAGE for the same request (what makes the comparison fair)."""
    body = {"inputs": [{"name": "SEED", "shape": [3, 1], "datatype": "INT64", "data": [5, 6, 7]}]}
    images = []
    for port in PORTS.values():
        output = httpx.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=body, timeout=30).json()
        images.append(np.asarray(output["outputs"][0]["data"], np.uint8))
    return bool(np.array_equal(*images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="8,32,128")
    parser.add_argument("--rows", default="1,16", help="seeds per request")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parse_args(parser, concurrency="8", rows="1", seconds=2, repeats=1, workers=1)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = trained_default28()
    servers = start(model_dir, args.workers)
    rows = []
    try:
        identical = same_pixels(model_dir.name)
        oip_path = f"/v2/models/{model_dir.name}/infer"
        contenders = {"ganserve OIP": ("ganserve", oip_path), "triton OIP": ("triton", oip_path),
                      "ganserve native": ("ganserve", "/generate")}
        for count in [int(r) for r in args.rows.split(",")]:
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                runs: dict[str, list[dict]] = {name: [] for name in contenders}
                for _ in range(args.repeats):
                    for name, (server, path) in contenders.items():  # interleaved
                        if name == "ganserve native" and count != 1:
                            continue
                        url = f"http://127.0.0.1:{PORTS[server]}{path}"
                        if path == "/generate":
                            runs[name].append(wrk(url, concurrency, args.seconds, NATIVE))
                        else:
                            runs[name].append(wrk(url, concurrency, args.seconds, script="oip.lua",
                                                  script_env={"WRK_ROWS": str(count)}))
                for name, results in runs.items():
                    if not results:
                        continue
                    rps = summary([r["requests_per_s"] for r in results])
                    rows.append({"contender": name, "rows": count, "concurrency": concurrency, "requests_per_s": rps,
                                 "images_per_s": round(count * rps["median"], 1),
                                 "p50_ms": summary([r["p50_ms"] for r in results])["median"],
                                 "p99_ms": summary([r["p99_ms"] for r in results]),
                                 "errors": sum(r["errors"] for r in results)})
                    print(f"rows={count:<3} c={concurrency:<4} {name:16} {rps['median']:8.1f} req/s (min "
                          f"{rps['min']:.0f}, max {rps['max']:.0f})  p99 {rows[-1]['p99_ms']['median']:7.1f} ms  "
                          f"errors {rows[-1]['errors']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    write_result("oip-triton", {
        "settings": {k: v for k, v in vars(args).items()}, "model": model_dir.name, "same_pixels": identical,
        "client": "wrk 4.x, benchmarks/server/oip.lua (the same body for both servers)", "rows": rows})


if __name__ == "__main__":
    main()
