"""Where ganserve's latency tail comes from, measured rather than assumed.

Runs `generate` n=1 under wrk against one or more ganserve variants, interleaved, and for each
run records, besides requests/s and p50/p99:
- how the keep-alive connections are spread over the worker processes (`ss`, mid-run), and
  each worker's CPU seconds: a worker holding more connections does more of the work;
- the event loop's lag (ganserve_event_loop_lag_seconds): how late a 25 ms probe woke;
- the greedy batcher's run sizes (ganserve_batch_size);
- garbage-collection pauses per generation (diagnosis_service.py adds that histogram);
- CPU time per request of the whole server.
Variants (--variants) change one thing each, through the environment:
  default                  the shipped settings
  tracing                  BentoML's OpenTelemetry spans on ganserve's routes too (GANSERVE_TRACING=1)
  bentoml-timeout          BentoML's own timeout middleware, which leaves a timer per request
  one-worker               1 worker with 2 ONNX Runtime threads (all HTTP on one event loop)

    python -m benchmarks.server.tail_diagnosis --model default28 --concurrency 32 --variants default,no-tracing
Writes results/NAME.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
import time

import httpx
import psutil

from benchmarks.common import WORK, parse_args, summary, write_result
from benchmarks.models import http_models
from benchmarks.server.http_bench import BIN, HERE, Server, wrk

VARIANTS = {
    "default": {},
    "tracing": {"GANSERVE_TRACING": "1"},
    "bentoml-timeout": {"GANSERVE_DIAGNOSIS_BENTOML_TIMEOUT": "1"},
    "one-worker": {"GANSERVE_WORKERS": "1", "GANSERVE_THREADS": "2"},
}


ROUTE = ["/generate"]


def start(variant: str, model_dir, port: int) -> Server:
    env = {"GANSERVE_MODEL": str(model_dir), "GANSERVE_DEVICE": "cpu", "GANSERVE_WORKERS": "2",
           "GANSERVE_THREADS": "1", "PYTHONPATH": str(HERE), **VARIANTS[variant]}
    server = Server(f"diag-{variant}", [str(BIN / "bentoml"), "serve", "diagnosis_service:GanService", "--port",
                                        str(port), "--host", "127.0.0.1"], f"http://127.0.0.1:{port}/readyz", env=env)
    server.port = port
    return server


def workers_of(server: Server) -> list[psutil.Process]:
    """BentoML's worker processes (they run _bentoml_impl.worker.service)."""
    tree = psutil.Process(server.process.pid).children(recursive=True)
    return [p for p in tree if "_bentoml_impl.worker" in " ".join(p.cmdline())]


def loop_thread_seconds(process: psutil.Process) -> float:
    """CPU seconds of a worker's main thread, the one that runs its event loop."""
    thread = next(t for t in process.threads() if t.id == process.pid)
    return thread.user_time + thread.system_time


def connections_per_process(port: int) -> dict[int, int]:
    text = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                          text=True).stdout
    counts: dict[int, int] = {}
    for pid in re.findall(r"pid=(\d+)", text):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


def histogram(text: str, name: str, label: str = "") -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, summed over label sets."""
    buckets: dict[float, float] = {}
    for le, value in re.findall(rf'^{name}_bucket\{{[^}}]*{label}[^}}]*le="([^"]+)"[^}}]*\}} (\S+)', text, re.M):
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def difference(after: dict, before: dict) -> dict:
    return {bound: after[bound] - before.get(bound, 0.0) for bound in after}


def quantile(cumulative: dict[float, float], q: float) -> float | None:
    """The smallest bucket bound that holds the quantile q of the observations."""
    total = cumulative.get(float("inf"), 0.0)
    if not total:
        return None
    return next(bound for bound in sorted(cumulative) if cumulative[bound] >= q * total)


def one_run(server: Server, concurrency: int, seconds: int) -> dict:
    url = f"http://127.0.0.1:{server.port}"
    workers = workers_of(server)
    cpu_before = {p.pid: sum(p.cpu_times()[:2]) for p in workers}
    loop_before = {p.pid: loop_thread_seconds(p) for p in workers}
    total_before = server.cpu_seconds()
    metrics_before = httpx.get(url + "/metrics", timeout=10).text
    spread: dict[int, int] = {}

    def sample_connections():
        time.sleep(seconds / 2)
        spread.update(connections_per_process(server.port))

    sampler = threading.Thread(target=sample_connections)
    sampler.start()
    result = wrk(url + ROUTE[0], concurrency, seconds, '{"seed": %d}')
    sampler.join()
    metrics_after = httpx.get(url + "/metrics", timeout=10).text
    lag = difference(histogram(metrics_after, "ganserve_event_loop_lag_seconds"),
                     histogram(metrics_before, "ganserve_event_loop_lag_seconds"))
    runs = difference(histogram(metrics_after, "ganserve_batch_size", 'graph="generator"'),
                      histogram(metrics_before, "ganserve_batch_size", 'graph="generator"'))
    full_gc = difference(histogram(metrics_after, "ganserve_gc_pause_seconds", 'generation="2"'),
                         histogram(metrics_before, "ganserve_gc_pause_seconds", 'generation="2"'))
    worker_cpu = sorted(round(sum(p.cpu_times()[:2]) - cpu_before[p.pid], 2) for p in workers)
    worker_total = sum(sum(p.cpu_times()[:2]) - cpu_before[p.pid] for p in workers)
    loop_total = sum(loop_thread_seconds(p) - loop_before[p.pid] for p in workers)
    requests = max(result["requests"], 1)
    return {**result, "connections_per_worker": sorted(spread.get(p.pid, 0) for p in workers),
            "cpu_s_per_worker": worker_cpu,
            "cpu_us_per_request": (server.cpu_seconds() - total_before) / requests * 1e6,
            # a worker's main thread is its event loop (HTTP, the routes); its others run the engine
            "loop_thread_us_per_request": round(loop_total / requests * 1e6),
            "engine_threads_us_per_request": round((worker_total - loop_total) / requests * 1e6),
            "loop_lag_p50_ms": _ms(quantile(lag, 0.5)), "loop_lag_p99_ms": _ms(quantile(lag, 0.99)),
            "loop_lag_max_bucket_ms": _ms(quantile(lag, 1.0)),
            "batch_p50": quantile(runs, 0.5), "batch_p99": quantile(runs, 0.99),
            "full_gc_count": full_gc.get(float("inf"), 0.0), "full_gc_max_bucket_ms": _ms(quantile(full_gc, 1.0)),
            "runs": runs.get(float("inf"), 0.0)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default28")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--concurrency", default="32")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--route", default="/generate", help="/generate, or /noop: the framework alone")
    parser.add_argument("--name", default="tail-diagnosis")
    args = parse_args(parser, seconds=2, repeats=1)
    ROUTE[0] = args.route
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = http_models()[args.model]()
    variants = args.variants.split(",")
    servers = {v: start(v, model_dir, 3131 + i) for i, v in enumerate(variants)}
    rows = []
    try:
        for server in servers.values():
            server.wait_ready()
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for variant, server in servers.items():  # interleaved
                    run = one_run(server, concurrency, args.seconds)
                    runs[variant].append(run)
                    print(f"c={concurrency:<4} {variant:18} {run['requests_per_s']:7.0f} req/s  "
                          f"p99 {run['p99_ms']:6.1f} ms  conns {run['connections_per_worker']}  "
                          f"cpu/worker {run['cpu_s_per_worker']}  "
                          f"{run['cpu_us_per_request']:5.0f} us/req (loop {run['loop_thread_us_per_request']}, engine "
                          f"{run['engine_threads_us_per_request']})  loop lag p99 {run['loop_lag_p99_ms']} ms "
                          f"(max bucket {run['loop_lag_max_bucket_ms']})  batch p50/p99 {run['batch_p50']}/"
                          f"{run['batch_p99']}  full GCs {run['full_gc_count']:.0f} (max bucket "
                          f"{run['full_gc_max_bucket_ms']} ms)", flush=True)
            for variant, results in runs.items():
                rows.append({"variant": variant, "concurrency": concurrency,
                             "requests_per_s": summary([r["requests_per_s"] for r in results]),
                             "p99_ms": summary([r["p99_ms"] for r in results]),
                             "cpu_us_per_request": summary([r["cpu_us_per_request"] for r in results]),
                             "runs": results})
        write_result(args.name, {"settings": vars(args), "model": args.model, "rows": rows})
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
