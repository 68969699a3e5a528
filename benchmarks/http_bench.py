"""HTTP under load: ganserve vs TorchServe vs a naive PyTorch server vs BentoML's no-op
ceiling, same generator weights, wrk (HTTP/1.1 keep-alive) in its own process.

Contenders are interleaved within each repeat; figures are medians with their spread.
Writes results/http.json. Needs `wrk` (Debian package) and, for TorchServe, Java 17.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common import WORK, summary, write_result
from models import trained_dcgan28

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TS_VENV = Path(os.environ.get("GANSERVE_TS_VENV", "/tmp/ts-venv"))
TS_PEER = HERE.parents[1] / "shared" / "peers" / "torchserve"
PORTS = {"ganserve": 3101, "torchserve": 8580, "naive": 3103, "noop": 3104, "adaptive": 3105}


class Server:
    def __init__(self, name: str, command: list[str], ready_url: str, env: dict | None = None):
        self.name, self.ready_url = name, ready_url
        self.log = open(WORK / f"{name}.log", "w")
        # cwd: TorchServe writes a logs/ folder wherever it starts; keep it out of the checkout
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=WORK,
                                        env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            try:
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had already exited


def torchserve_store(model_dir: Path) -> Path:
    """TorchScript of the same generator (uint8 NHWC output, like generator.onnx) in a .mar."""
    import torch

    from export.graphs import GeneratorGraph
    from training.release import read_release

    store = WORK / "ts-store"
    if (store / "gen.mar").is_file():
        return store
    if not (TS_VENV / "bin" / "torchserve").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(TS_VENV)], check=True)
        subprocess.run([str(TS_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "torchserve",
                        "torch-model-archiver", "pyyaml", "pillow", "numpy"], check=True)
    release = read_release(WORK / "runs" / model_dir.name)
    graph = GeneratorGraph(release.build_generator()).eval()
    build = WORK / "ts-build"
    build.mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(graph, torch.zeros(2, release.spec.latent_dim))
    traced.save(str(build / "generator.pt"))
    (build / "peer.json").write_text(json.dumps({"latent_dim": release.spec.latent_dim}))
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(TS_VENV / "bin" / "torch-model-archiver"), "--model-name", "gen", "--version", "1.0",
                    "--serialized-file", str(build / "generator.pt"), "--extra-files", str(build / "peer.json"),
                    "--handler", str(TS_PEER / "handler.py"), "--export-path", str(store), "-f"], check=True)
    return store


def start_servers(model_dir: Path, workers: int, threads: int, with_torchserve: bool) -> dict[str, Server]:
    servers = {
        "ganserve": Server("ganserve", [str(BIN / "ganserve"), "serve", str(model_dir), "--port",
                                        str(PORTS["ganserve"]), "--host", "127.0.0.1", "--workers", str(workers),
                                        "--threads", str(threads), "--device", "cpu"],
                           f"http://127.0.0.1:{PORTS['ganserve']}/readyz"),
        "naive": Server("naive", [sys.executable, str(HERE / "naive_server.py"), str(WORK / "runs" / model_dir.name),
                                  str(PORTS["naive"])], f"http://127.0.0.1:{PORTS['naive']}/docs-none",),
        "noop": Server("noop", [str(BIN / "bentoml"), "serve", "noop_service:Noop", "--port", str(PORTS["noop"]),
                                "--host", "127.0.0.1"], f"http://127.0.0.1:{PORTS['noop']}/readyz",
                       env={"GANSERVE_WORKERS": str(workers), "PYTHONPATH": str(HERE)}),
        "adaptive": Server("adaptive", [str(BIN / "bentoml"), "serve", "adaptive_service:Adaptive", "--port",
                                        str(PORTS["adaptive"]), "--host", "127.0.0.1"],
                           f"http://127.0.0.1:{PORTS['adaptive']}/readyz",
                           env={"GANSERVE_WORKERS": str(workers), "GANSERVE_THREADS": str(threads),
                                "GANSERVE_MODEL": str(model_dir), "PYTHONPATH": str(HERE)}),
    }
    servers["naive"].ready_url = f"http://127.0.0.1:{PORTS['naive']}/ready"  # any answer means up
    if with_torchserve:
        store = torchserve_store(model_dir)
        subprocess.run([str(TS_VENV / "bin" / "torchserve"), "--stop"], capture_output=True)
        servers["torchserve"] = Server(
            "torchserve", [str(TS_VENV / "bin" / "torchserve"), "--start", "--ncs", "--foreground", "--model-store",
                           str(store), "--ts-config", str(TS_PEER / "config.properties")],
            "http://127.0.0.1:8580/ping", env={"PATH": f"{TS_VENV / 'bin'}:{os.environ['PATH']}",
                                               "PEER_THREADS": "1"})
    for server in servers.values():
        _wait_any_answer(server) if server.name == "naive" else server.wait_ready()
    if with_torchserve:  # /ping answers before the model's workers are up
        _wait_post("http://127.0.0.1:8580/predictions/gen", {"seed": 1})
    return servers


def _wait_any_answer(server: Server, timeout: float = 120) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            httpx.get(server.ready_url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{server.name} not up")


def _wait_post(url: str, body: dict, timeout: float = 120) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if httpx.post(url, json=body, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered 200")


def multipart_body(image_png: bytes) -> tuple[Path, str]:
    boundary = "ganservebenchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image_png + f"\r\n--{boundary}--\r\n".encode()
    path = WORK / "score-body.bin"
    path.write_bytes(body)
    return path, f"multipart/form-data; boundary={boundary}"


def wrk(url: str, concurrency: int, seconds: int, body: str | None = None, body_file: Path | None = None,
        content_type: str | None = None, threads: int = 2) -> dict:
    env = {**os.environ}
    if body:
        env["WRK_BODY"] = body
    if body_file:
        env["WRK_BODY_FILE"], env["WRK_CONTENT_TYPE"] = str(body_file), content_type
    threads = min(threads, concurrency)
    result = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "10s",
                             "-s", str(HERE / "wrk.lua"), url], capture_output=True, text=True, env=env)
    line = next((text for text in result.stdout.splitlines() if text.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {result.stdout[-500:]} {result.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {"requests_per_s": raw["requests"] / seconds_run, "p50_ms": raw["p50_us"] / 1e3,
            "p95_ms": raw["p95_us"] / 1e3, "p99_ms": raw["p99_us"] / 1e3, "errors": errors,
            "non_2xx": raw["errors_status"], "timeouts": raw["errors_timeout"], "requests": raw["requests"]}


def batch_counters() -> tuple[float, float]:
    text = httpx.get(f"http://127.0.0.1:{PORTS['ganserve']}/metrics", timeout=10).text
    def total(kind):
        return sum(float(v) for v in re.findall(rf'^ganserve_batch_size_{kind}\{{graph="generator"[^}}]*\}} (\S+)',
                                                   text, re.M))
    return total("count"), total("sum")


def scenarios(score_file: Path, score_type: str) -> list[dict]:
    gen = "/generate"
    return [
        {"endpoint": "generate n=1", "images": 1, "targets": {
            "ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}{gen}", '{"seed": %d}', None),
            "torchserve": ("http://127.0.0.1:8580/predictions/gen", '{"seed": %d}', None),
            "naive": (f"http://127.0.0.1:{PORTS['naive']}{gen}", '{"seed": %d}', None),
            "adaptive": (f"http://127.0.0.1:{PORTS['adaptive']}{gen}", '{"seeds": [%d]}', None),
            "noop": (f"http://127.0.0.1:{PORTS['noop']}{gen}", '{"seed": %d}', None)}},
        {"endpoint": "generate n=16", "images": 16, "targets": {
            "ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}{gen}", '{"seed": %d, "n": 16}', None),
            "naive": (f"http://127.0.0.1:{PORTS['naive']}{gen}", '{"seed": %d, "n": 16}', None)}},
        # Discriminator-guided sampling: its cost against plain "generate n=1" in the same run.
        {"endpoint": "generate n=1 drs=0.5", "images": 1, "targets": {
            "ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}{gen}", '{"seed": %d, "drs_accept": 0.5}', None)}},
        {"endpoint": "generate n=1 best-of-4", "images": 1, "targets": {
            "ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}{gen}", '{"seed": %d, "keep_top": 0.25}', None)}},
        {"endpoint": "score 1 image", "images": 1, "targets": {
            "ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}/score", None, score_file),
            "naive": (f"http://127.0.0.1:{PORTS['naive']}/score", None, score_file)}},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32,128,256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--endpoints", default="generate n=1,generate n=16,score 1 image",
                        help="comma list; also: generate n=1 drs=0.5, generate n=1 best-of-4")
    parser.add_argument("--no-torchserve", action="store_true")
    parser.add_argument("--name", default="http", help="results file name (results/NAME.json)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = trained_dcgan28()
    servers = start_servers(model_dir, args.workers, args.threads, not args.no_torchserve)
    try:
        png = httpx.post(f"http://127.0.0.1:{PORTS['ganserve']}/generate", json={"seed": 1}).content
        score_file, score_type = multipart_body(png)
        wanted = set(args.endpoints.split(","))
        rows = []
        for scenario in [s for s in scenarios(score_file, score_type) if s["endpoint"] in wanted]:
            for name, (url, body, file) in scenario["targets"].items():
                if name in servers:  # one-off work (e.g. fitting a DRS rule) stays out of the timings
                    wrk(url, 2 * args.workers, 1, body, file, score_type if file else None)
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                runs: dict[str, list[dict]] = {}
                batches = []
                for _ in range(args.repeats):
                    for name, (url, body, file) in scenario["targets"].items():
                        if name not in servers:
                            continue
                        before = batch_counters() if name == "ganserve" else None
                        result = wrk(url, concurrency, args.seconds, body, file, score_type if file else None)
                        if before:
                            after = batch_counters()
                            if after[0] > before[0]:
                                batches.append((after[1] - before[1]) / (after[0] - before[0]))
                        runs.setdefault(name, []).append(result)
                for name, results in runs.items():
                    rps = summary([r["requests_per_s"] for r in results])
                    row = {"endpoint": scenario["endpoint"], "server": name, "concurrency": concurrency,
                           "requests_per_s": rps,
                           "images_per_s": scenario["images"] * rps["median"],
                           "p50_ms": summary([r["p50_ms"] for r in results])["median"],
                           "p95_ms": summary([r["p95_ms"] for r in results])["median"],
                           "p99_ms": summary([r["p99_ms"] for r in results]),
                           "errors": sum(r["errors"] for r in results),
                           "requests": sum(r["requests"] for r in results)}
                    if name == "ganserve" and batches and scenario["endpoint"].startswith("generate"):
                        row["mean_batch_images"] = round(summary(batches)["median"], 2)
                    rows.append(row)
                    print(f"{scenario['endpoint']:14} c={concurrency:<4} {name:10} {rps['median']:8.1f} req/s "
                          f"(min {rps['min']:.0f}, max {rps['max']:.0f})  p99 {row['p99_ms']['median']:7.1f} ms  "
                          f"errors {row['errors']}" + (f"  batch {row.get('mean_batch_images')}" if
                                                       row.get("mean_batch_images") else ""), flush=True)
        write_result(args.name, {"settings": vars(args), "model": model_dir.name, "rows": rows})
    finally:
        for server in servers.values():
            server.stop()
        if "torchserve" in servers:
            subprocess.run([str(TS_VENV / "bin" / "torchserve"), "--stop"], capture_output=True)


if __name__ == "__main__":
    main()
