"""What several loaded models cost a worker, and what a request to an unloaded one costs.

For N = 1, 2, 4, 8 copies of a model in a repository, one `ganserve serve` worker starts with
every model loaded: its memory (RSS, and USS: the pages that are the worker's alone) and the
seconds to /readyz, so the cost of a model is the slope. Then, with --max-loaded-models 2 and
8 models, requests go round the models: each first request loads, verifies and warms its
model (and another is unloaded); its latency is set beside a request to a loaded model.
Models: the 28 px default and the 64 px RGB width-64 dcgan.

    python -m benchmarks.server.repository_memory [--quick]

Writes results/repository-memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil

from benchmarks.common import WORK, parse_args, write_result
from benchmarks.models import trained_default28, untrained
from benchmarks.server.http_bench import Server
from tests.serving.versions import copy_version

HERE = Path(__file__).resolve().parent

PORT = 3122


def start(repo: Path, *options: str) -> tuple[Server, float]:
    ganserve = Path(sys.executable).parent / "ganserve"
    server = Server("repository-memory-server", [str(ganserve), "serve", str(repo), "--port", str(PORT), "--host",
                                                 "127.0.0.1", "--workers", "1", "--poll-seconds", "0", *options],
                    f"http://127.0.0.1:{PORT}/readyz")
    return server, server.wait_ready(timeout=300)


def worker_memory(server: Server) -> dict:
    """The worker process: BentoML's serve process starts it (the one whose command line names
    the worker); RSS and USS in MiB."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    workers = [p for p in children if "worker" in " ".join(p.cmdline()) or "_bentoml_impl" in " ".join(p.cmdline())]
    process = max(workers or children, key=lambda p: p.memory_info().rss)
    info = process.memory_full_info()
    return {"rss_mib": round(info.rss / 2**20, 1), "uss_mib": round(info.uss / 2**20, 1)}


def repository(name: str, model: Path, count: int) -> Path:
    repo = WORK / f"repo-{name}-{count}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for index in range(count):
        copy_version(model, repo / f"m{index:02d}")
    return repo


def measure_counts(name: str, model: Path, counts: list[int]) -> list[dict]:
    rows = []
    for count in counts:
        server, ready_s = start(repository(name, model, count))
        try:
            time.sleep(1.0)  # let the worker settle after warm-up
            rows.append({"models": count, "ready_s": round(ready_s, 2), **worker_memory(server)})
        finally:
            server.stop()
        print(f"{name}: {rows[-1]}", flush=True)
    return rows


def measure_cold_requests(name: str, model: Path, rounds: int) -> dict:
    repo = repository(name, model, 8)
    server, _ = start(repo, "--max-loaded-models", "2", "--default-model", "m00")
    base = f"http://127.0.0.1:{PORT}"
    cold, warm = [], []
    try:
        for round_ in range(rounds):
            for index in range(1, 8):  # m00 is the default and stays loaded; the others take turns
                url = f"{base}/models/m{index:02d}/generate"
                start_t = time.perf_counter()
                assert httpx.post(url, json={"seed": round_}, timeout=60).status_code == 200
                cold.append(time.perf_counter() - start_t)
                start_t = time.perf_counter()
                assert httpx.post(url, json={"seed": round_ + 1000}, timeout=60).status_code == 200
                warm.append(time.perf_counter() - start_t)
        loaded = sum(m["loaded"] for m in httpx.get(f"{base}/models").json()["models"])
    finally:
        server.stop()
    return {"max_loaded_models": 2, "models": 8, "loaded_at_end": loaded,
            "first_request_ms": {"median": round(1e3 * statistics.median(cold), 1), "max": round(1e3 * max(cold), 1),
                                 "n": len(cold)},
            "loaded_request_ms": {"median": round(1e3 * statistics.median(warm), 1), "n": len(warm)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_args(parser)  # fewer sizes and rounds, the small model only
    counts, rounds = ([1, 2], 1) if args.quick else ([1, 2, 4, 8], 3)
    models = {"default28": trained_default28()}
    if not args.quick:
        models["dcgan64rgb"] = untrained("dcgan64rgb", "dcgan", 64, channels=3)
    result = {}
    for name, model in models.items():
        rows = measure_counts(name, model, counts)
        per_model = (rows[-1]["uss_mib"] - rows[0]["uss_mib"]) / (rows[-1]["models"] - rows[0]["models"])
        result[name] = {"by_count": rows, "uss_mib_per_added_model": round(per_model, 1),
                        "cold_start": measure_cold_requests(name, model, rounds)}
        print(json.dumps(result[name]["cold_start"]), flush=True)
    path = write_result("repository-memory", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
