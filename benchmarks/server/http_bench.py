"""HTTP under load: ganserve against TorchServe and Triton running the very same generator.onnx
under ONNX Runtime (1 intra-op thread per worker or instance, one per CPU), so the comparison
measures the servers. wrk (HTTP/1.1 keep-alive) runs in its own process; every request asks
for a fresh seed (no server can answer from a cache); contenders are interleaved within each
repeat, and every figure is a median with its spread.

Servers (--servers): ganserve; torchserve (the ONNX handler in peers/, batch 32 / 10 ms);
triton (../shared/peers/triton: the real tritonserver with its dynamic batcher); and, as
secondary rows, torchserve-ts (the same weights as TorchScript), naive (Starlette + PyTorch
eager per request) and noop (BentoML's own ceiling: an endpoint that does nothing).

Per run it also records the CPU time of the server's whole process tree per request, and
for ganserve the mean rows per ONNX Runtime run. Writes results/NAME.json.
Needs wrk (Debian), Java 17 for TorchServe, and the peers' venvs (set up on first use).
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
import psutil

from benchmarks.common import WORK, parse_args, summary, write_result
from benchmarks.models import http_models

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SHARED = HERE.parents[2] / "shared" / "peers"
TS_VENV = Path(os.environ.get("GANSERVE_TS_VENV", "/tmp/ts-venv"))
TRITON_VENV = Path(os.environ.get("GANSERVE_TRITON_VENV", "/tmp/triton-venv"))
PORTS = {"ganserve": 3101, "ganserve-ort": 3105, "torchserve": 8580, "triton": 8700, "naive": 3103, "noop": 3104}
TRITON_BODY = ('{"inputs":[{"name":"seed","shape":[1,1],"datatype":"INT64","data":[%d]}],'
               '"outputs":[{"name":"png","parameters":{"binary_data":true}}]}')


class Server:
    def __init__(self, name: str, command: list[str], ready_url: str, env: dict | None = None):
        self.name, self.ready_url = name, ready_url
        self.log = open(WORK / f"{name}.log", "w")
        # cwd: TorchServe writes a logs/ folder wherever it starts; keep it out of the checkout
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=WORK,
                                        env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_ready(self, timeout: float = 240, method: str = "GET", body: dict | None = None) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            try:
                response = httpx.request(method, self.ready_url, json=body, timeout=5)
                if response.status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}, which ends:\n{self.log_tail()}")
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready in {timeout} s; see {self.log.name}")

    def log_tail(self, lines: int = 25) -> str:
        """The end of the server's log: what a failed start says (a test shows only the exception)."""
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's whole process tree so far (live processes)."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        """Stop the server and every process it started: BentoML's workers run in sessions of
        their own, and one left behind would take a share of a later server's connections on
        the same port (the sockets are SO_REUSEPORT)."""
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had already exited
        _, alive = psutil.wait_procs(descendants, timeout=15)
        for process in alive:
            process.kill()


# --- the servers -------------------------------------------------------------------------------

def start_ganserve(model_dir: Path, workers: int, threads: int, name: str = "ganserve") -> Server:
    """`ganserve` as its users run it (the engine measured per model: --engine auto), or
    `ganserve-ort` pinned to ONNX Runtime, the engine the peers run."""
    engine = ["--engine", "onnxruntime"] if name == "ganserve-ort" else ["--engine", "auto"]
    server = Server(name, [str(BIN / "ganserve"), "serve", str(model_dir), "--port", str(PORTS[name]),
                           "--host", "127.0.0.1", "--workers", str(workers), "--threads", str(threads),
                           "--device", "cpu", *engine], f"http://127.0.0.1:{PORTS[name]}/readyz",
                    env={"GANSERVE_ENGINE": ""})
    server.wait_ready()
    return server


def _ts_venv() -> Path:
    if not (TS_VENV / "bin" / "torchserve").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(TS_VENV)], check=True)
        subprocess.run([str(TS_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "torchserve",
                        "torch-model-archiver", "pyyaml", "pillow", "numpy", "onnxruntime"], check=True)
    return TS_VENV


def _torchscript_file(model_dir: Path, build: Path) -> Path:
    """The same generator as TorchScript (uint8 NHWC output, like generator.onnx)."""
    import torch

    from export.graphs import GeneratorGraph
    from training.release import read_release

    release = read_release(WORK / "runs" / model_dir.name)
    traced = torch.jit.trace(GeneratorGraph(release.build_generator()).eval(), torch.zeros(2, release.spec.latent_dim))
    traced.save(str(build / "generator.pt"))
    (build / "peer.json").write_text(json.dumps({"latent_dim": release.spec.latent_dim}))
    return build / "generator.pt"


def start_torchserve(model_dir: Path, workers: int, with_torchscript: bool) -> Server:
    """One TorchServe with the ONNX handler as model `gen` and, optionally, the TorchScript peer
    as `gents`; each with `workers` workers, batches of up to 32 rows or 10 ms."""
    venv = _ts_venv()
    store = WORK / f"ts-store-{model_dir.name}"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    archiver = str(venv / "bin" / "torch-model-archiver")
    subprocess.run([archiver, "--model-name", "gen", "--version", "1.0", "--serialized-file",
                    str(model_dir / "generator.onnx"), "--extra-files", str(model_dir / "model.json"),
                    "--handler", str(HERE / "peers" / "torchserve_onnx_handler.py"), "--export-path", str(store),
                    "-f"], check=True)
    models = {"gen": {"1.0": {"defaultVersion": True, "marName": "gen.mar", "minWorkers": workers,
                              "maxWorkers": workers, "batchSize": 32, "maxBatchDelay": 10, "responseTimeout": 60}}}
    if with_torchscript:
        build = WORK / f"ts-build-{model_dir.name}"
        build.mkdir(parents=True, exist_ok=True)
        subprocess.run([archiver, "--model-name", "gents", "--version", "1.0", "--serialized-file",
                        str(_torchscript_file(model_dir, build)), "--extra-files", str(build / "peer.json"),
                        "--handler", str(SHARED / "torchserve" / "handler.py"), "--export-path", str(store), "-f"],
                       check=True)
        models["gents"] = {"1.0": {**models["gen"]["1.0"], "marName": "gents.mar"}}
    config = WORK / f"ts-{model_dir.name}.properties"
    config.write_text("\n".join([
        f"inference_address=http://127.0.0.1:{PORTS['torchserve']}", "management_address=http://127.0.0.1:8581",
        "metrics_address=http://127.0.0.1:8582", "disable_token_authorization=true",
        "install_py_dep_per_model=false", f"load_models={','.join(m + '.mar' for m in models)}",
        f"models={json.dumps(models)}", ""]))
    subprocess.run([str(venv / "bin" / "torchserve"), "--stop"], capture_output=True)
    server = Server("torchserve", [str(venv / "bin" / "torchserve"), "--start", "--ncs", "--foreground",
                                   "--model-store", str(store), "--ts-config", str(config)],
                    f"http://127.0.0.1:{PORTS['torchserve']}/predictions/gen",
                    env={"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PEER_THREADS": "1"})
    server.wait_ready(method="POST", body={"seed": 1})  # /ping answers before the workers are up
    if with_torchscript:
        httpx.post(f"http://127.0.0.1:{PORTS['torchserve']}/predictions/gents", json={"seed": 1}, timeout=60)
    return server


def triton_python() -> Path:
    """The Triton peer's interpreter, its venv made on first use (PyTriton pins numpy<2)."""
    if not (TRITON_VENV / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(TRITON_VENV)], check=True)
        subprocess.run([str(TRITON_VENV / "bin" / "pip"), "install", "-q", "nvidia-pytriton==0.7.0", "onnxruntime",
                        "pillow"], check=True)
    return TRITON_VENV / "bin" / "python"


def start_triton(model_dir: Path, instances: int) -> Server:
    server = Server("triton", [str(triton_python()), str(SHARED / "triton" / "server.py"),
                               str(model_dir), "--http-port", str(PORTS["triton"]), "--instances", str(instances)],
                    f"http://127.0.0.1:{PORTS['triton']}/v2/models/gen/ready")
    server.wait_ready()
    return server


def start_naive(model_dir: Path) -> Server:
    server = Server("naive", [sys.executable, str(HERE / "naive_server.py"), str(WORK / "runs" / model_dir.name),
                              str(PORTS["naive"])], f"http://127.0.0.1:{PORTS['naive']}/generate")
    server.wait_ready(method="POST", body={"seed": 1})
    return server


def start_noop(workers: int) -> Server:
    server = Server("noop", [str(BIN / "bentoml"), "serve", "noop_service:Noop", "--port", str(PORTS["noop"]),
                             "--host", "127.0.0.1"], f"http://127.0.0.1:{PORTS['noop']}/readyz",
                    env={"GANSERVE_WORKERS": str(workers), "PYTHONPATH": str(HERE)})
    server.wait_ready()
    return server


# --- the load ----------------------------------------------------------------------------------

def multipart_body(image_png: bytes) -> tuple[Path, str]:
    boundary = "ganservebenchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image_png + f"\r\n--{boundary}--\r\n".encode()
    path = WORK / "score-body.bin"
    path.write_bytes(body)
    return path, f"multipart/form-data; boundary={boundary}"


def wrk(url: str, concurrency: int, seconds: int, body: str | None = None, body_file: Path | None = None,
        content_type: str | None = None, threads: int = 2, script: str = "wrk.lua",
        script_env: dict[str, str] | None = None) -> dict:
    """One wrk run; `body` is a template with %d for a fresh seed per request (wrk.lua), or
    another script of this folder with its own settings in `script_env` (oip.lua)."""
    env = {**os.environ, **(script_env or {})}
    if body:
        env["WRK_BODY"] = body
    if body_file:
        env["WRK_BODY_FILE"], env["WRK_CONTENT_TYPE"] = str(body_file), content_type
    threads = min(threads, concurrency)
    result = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "10s",
                             "-s", str(HERE / script), url], capture_output=True, text=True, env=env)
    line = next((text for text in result.stdout.splitlines() if text.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {result.stdout[-500:]} {result.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {"requests_per_s": raw["requests"] / seconds_run, "p50_ms": raw["p50_us"] / 1e3,
            "p95_ms": raw["p95_us"] / 1e3, "p99_ms": raw["p99_us"] / 1e3, "errors": errors,
            "non_2xx": raw["errors_status"], "timeouts": raw["errors_timeout"], "requests": raw["requests"]}


def ganserve_batches() -> tuple[float, float]:
    """(runs, rows) of ganserve's generator so far, from its ganserve_batch_size histogram."""
    text = httpx.get(f"http://127.0.0.1:{PORTS['ganserve']}/metrics", timeout=10).text

    def total(kind):
        return sum(float(v) for v in re.findall(rf'^ganserve_batch_size_{kind}\{{graph="generator"[^}}]*\}} (\S+)',
                                                   text, re.M))
    return total("count"), total("sum")


def triton_batches() -> tuple[float, float]:
    """(executions, inferences) of Triton's model so far, from its statistics."""
    stats = httpx.get(f"http://127.0.0.1:{PORTS['triton']}/v2/models/gen/stats", timeout=10).json()
    model = stats["model_stats"][0]
    return float(model["execution_count"]), float(model["inference_count"])


BATCH_COUNTERS = {"ganserve": ganserve_batches, "triton": triton_batches}


def targets(endpoint: str, score_file: Path, score_type: str) -> dict[str, tuple]:
    """server -> (url, body template, body file, content type, images per request)."""
    gen, ts = f"http://127.0.0.1:{PORTS['ganserve']}/generate", f"http://127.0.0.1:{PORTS['torchserve']}/predictions"
    gen_ort = f"http://127.0.0.1:{PORTS['ganserve-ort']}/generate"
    one = '{"seed": %d}'
    triton = f"http://127.0.0.1:{PORTS['triton']}/v2/models/gen/infer"
    return {
        "generate n=1": {"ganserve": (gen, one, None, None, 1), "ganserve-ort": (gen_ort, one, None, None, 1),
                         "torchserve": (f"{ts}/gen", one, None, None, 1),
                         "triton": (triton, TRITON_BODY, None, None, 1),
                         "torchserve-ts": (f"{ts}/gents", one, None, None, 1),
                         "naive": (f"http://127.0.0.1:{PORTS['naive']}/generate", one, None, None, 1),
                         "noop": (f"http://127.0.0.1:{PORTS['noop']}/generate", one, None, None, 1)},
        "generate n=16": {"ganserve": (gen, '{"seed": %d, "n": 16}', None, None, 16),
                          "ganserve-ort": (gen_ort, '{"seed": %d, "n": 16}', None, None, 16)},
        "score 1 image": {"ganserve": (f"http://127.0.0.1:{PORTS['ganserve']}/score", None, score_file, score_type, 1)},
    }[endpoint]


def wait_idle(servers: dict[str, Server], most_cores: float = 0.05, timeout: float = 90) -> float:
    """Seconds until every server's tree is idle (under `most_cores` of a core over half a second).
    An overloaded run leaves abandoned requests behind in some servers' queues; the next run
    must not pay for them."""
    start = time.perf_counter()
    trees = set(servers.values())
    while time.perf_counter() - start < timeout:
        before = [server.cpu_seconds() for server in trees]
        time.sleep(0.5)
        busy = sum(server.cpu_seconds() - b for server, b in zip(trees, before)) / 0.5
        if busy < most_cores:
            break
    return time.perf_counter() - start


def measure(servers: dict[str, Server], endpoints: list[str], concurrency: int, repeats: int, seconds: int,
            score_file: Path, score_type: str) -> list[dict]:
    """Every (endpoint, server) pair at this client count, each run once per repeat, all of them
    interleaved within each repeat (a drifting machine then drifts for all of them alike)."""
    wanted = {(endpoint, name): target for endpoint in endpoints
              for name, target in targets(endpoint, score_file, score_type).items() if name in servers}
    runs: dict[tuple, list[dict]] = {key: [] for key in wanted}
    for _ in range(repeats):
        for (endpoint, name), (url, body, file, content_type, _) in wanted.items():
            server = servers[name]
            counter = BATCH_COUNTERS.get(name) if endpoint.startswith("generate") else None
            idle_wait = wait_idle(servers)
            before_batches = counter() if counter else None
            before_cpu = server.cpu_seconds()
            result = wrk(url, concurrency, seconds, body, file, content_type)
            result["cpu_us_per_request"] = (server.cpu_seconds() - before_cpu) / max(result["requests"], 1) * 1e6
            result["idle_wait_s"] = round(idle_wait, 1)
            if counter:
                runs_now, rows_now = counter()
                done = runs_now - before_batches[0]
                result["mean_batch"] = (rows_now - before_batches[1]) / done if done else None
            runs[(endpoint, name)].append(result)
    rows = []
    for (endpoint, name), results in runs.items():
        rps = summary([r["requests_per_s"] for r in results])
        row = {"endpoint": endpoint, "server": name, "concurrency": concurrency, "requests_per_s": rps,
               "images_per_s": wanted[(endpoint, name)][4] * rps["median"],
               "p50_ms": summary([r["p50_ms"] for r in results])["median"],
               "p99_ms": summary([r["p99_ms"] for r in results]),
               "cpu_us_per_request": round(summary([r["cpu_us_per_request"] for r in results])["median"], 1),
               "errors": sum(r["errors"] for r in results), "requests": sum(r["requests"] for r in results),
               "most_idle_wait_s": max(r["idle_wait_s"] for r in results)}
        batches = [r["mean_batch"] for r in results if r.get("mean_batch")]
        if batches:
            row["mean_batch"] = round(summary(batches)["median"], 2)
        rows.append(row)
        print(f"{endpoint:14} c={concurrency:<4} {name:14} {rps['median']:8.1f} req/s (min {rps['min']:.0f}, "
              f"max {rps['max']:.0f})  p99 {row['p99_ms']['median']:7.1f} ms  "
              f"cpu {row['cpu_us_per_request']:7.0f} us/req"
              f"  errors {row['errors']}" + (f"  batch {row['mean_batch']}" if "mean_batch" in row else ""),
              flush=True)
    return rows


def start_servers(names: list[str], model_dir: Path, workers: int, threads: int) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    starters = {"ganserve": lambda: start_ganserve(model_dir, workers, threads),
                "ganserve-ort": lambda: start_ganserve(model_dir, workers, threads, "ganserve-ort"),
                "torchserve": lambda: start_torchserve(model_dir, workers, "torchserve-ts" in names),
                "triton": lambda: start_triton(model_dir, workers),
                "naive": lambda: start_naive(model_dir), "noop": lambda: start_noop(workers)}
    try:
        for name in names:
            if name in starters:
                servers[name] = starters[name]()
        if "torchserve-ts" in names:  # a second model in the same TorchServe
            servers["torchserve-ts"] = servers["torchserve"]
    except Exception:
        for server in servers.values():
            server.stop()
        raise
    return servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default28,dcgan64rgb", help="comma list of " + ", ".join(http_models()))
    parser.add_argument("--servers", default="ganserve,torchserve,triton",
                        help="comma list of ganserve (its default engine choice), ganserve-ort (pinned to ONNX "
                             "Runtime, the peers' engine), torchserve, triton, torchserve-ts, naive, noop")
    parser.add_argument("--endpoints", default="generate n=1,generate n=16,score 1 image")
    parser.add_argument("--endpoints-for", action="append", default=[], metavar="MODEL=LIST",
                        help="endpoints for one model instead of --endpoints, e.g. 'dcgan64rgb=generate n=1'")
    parser.add_argument("--concurrency", default="8,32,128,256")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="workers / instances per server (default: usable CPUs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="http", help="results file name (results/NAME.json)")
    args = parse_args(parser, models="default28", servers="ganserve", endpoints="generate n=1", concurrency="8",
                      seconds=2, repeats=1, workers=1)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    names = args.servers.split(",")
    endpoints_for = dict(item.split("=", 1) for item in args.endpoints_for)
    rows = []
    for model_name in args.models.split(","):
        model_dir = http_models()[model_name]()
        servers = start_servers(names, model_dir, args.workers, args.threads)
        try:
            png = httpx.post(f"http://127.0.0.1:{PORTS['ganserve']}/generate", json={"seed": 1}).content \
                if "ganserve" in servers else b""
            score_file, score_type = multipart_body(png)
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                endpoints = endpoints_for.get(model_name, args.endpoints).split(",")
                for row in measure(servers, endpoints, concurrency, args.repeats, args.seconds,
                                   score_file, score_type):
                    rows.append({"model": model_name, **row})
        finally:
            for server in set(servers.values()):
                server.stop()
            if "torchserve" in servers:
                subprocess.run([str(TS_VENV / "bin" / "torchserve"), "--stop"], capture_output=True)
        write_result(args.name, {"settings": vars(args), "rows": rows})  # after each model: partial results survive


if __name__ == "__main__":
    main()
