"""Versions swapped under load: wrk at 32 clients posts to /models/faces/generate with a fresh
random seed per request while 10 versions are pushed into the repository, good ones and
deliberately broken ones alternating (a damaged file, a hand-edited card, a generator that
draws one constant image, one that outputs NaN). Counted: non-2xx answers, socket errors, and
the version of every answer (each must be a version that passed); p99 while versions swap,
beside the steady p99 of the same server before and after, in the same run.

How a version arrives, by --via:
- admin: POST /admin/models/faces/load {"version": N} (polling off); the answer comes when
  every worker has switched or refused, with the seconds that took;
- poll: the server scans the repository every second; a probe (a new connection per request,
  so it reaches every worker) times when the new version first answers and when the old one
  last answers.

    python -m benchmarks.server.swap_bench [--via admin|poll] [--quick]

Writes results/swap-<via>.json. Needs wrk (Debian).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from benchmarks.common import WORK, parse_args, write_result
from benchmarks.models import trained_default28
from benchmarks.server.http_bench import Server
from tests.serving.versions import BROKEN, copy_version

HERE = Path(__file__).resolve().parent

PORT = 3121
ADMIN_KEY = "benchmark-admin-key-0123456789abcdef"
# Version 1 is live at start; then 10 pushes, broken ones between good ones.
PUSHES = [("2", "good B"), ("3", "damaged file"), ("4", "good A"), ("5", "hand-edited card"), ("6", "good B"),
          ("7", "constant generator"), ("8", "good A"), ("9", "NaN generator"), ("10", "good B"),
          ("11", "damaged file")]


def wrk(url: str, seconds: float, clients: int = 32) -> dict:
    result = subprocess.run(["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds:.0f}s", "--timeout", "10s",
                             "-s", str(HERE / "swap.lua"), url], capture_output=True, text=True)
    line = next((text for text in result.stdout.splitlines() if text.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {result.stdout[-500:]} {result.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    socket_errors = raw["errors_connect"] + raw["errors_read"] + raw["errors_write"] + raw["errors_timeout"]
    return {"requests": raw["requests"], "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": raw["p50_us"] / 1e3, "p99_ms": raw["p99_us"] / 1e3, "max_ms": raw["max_us"] / 1e3,
            "non_2xx": raw["errors_status"], "socket_errors": socket_errors, "versions": raw["versions"],
            "statuses": raw["statuses"]}


class Probe(threading.Thread):
    """One request at a time, each on a new connection (so any worker may take it): when each
    version answered."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.seen, self.stop = url, [], threading.Event()

    def run(self) -> None:
        seed = 0
        while not self.stop.is_set():
            seed += 1
            try:
                response = httpx.post(self.url, json={"seed": seed}, timeout=10)
                self.seen.append((time.monotonic(), response.status_code, response.headers.get("x-model-version")))
            except httpx.HTTPError as error:
                self.seen.append((time.monotonic(), type(error).__name__, None))
            time.sleep(0.02)


def push(repo: Path, version: str, kind: str, good: dict[str, Path]) -> None:
    target = repo / "faces" / version
    if kind.startswith("good"):
        copy_version(good[kind], target)
    else:
        BROKEN[kind](good["good A"], target)


def switch_times(seen: list, pushed_at: float, new: str, old: str) -> dict:
    """From the probe: seconds from the push to the new version's first answer, and to the old
    one's last answer (after which every worker serves the new one)."""
    after = [(t, version) for t, status, version in seen if t >= pushed_at]
    first_new = next((t for t, version in after if version == new), None)
    last_old = max((t for t, version in after if version == old and (first_new is None or t <= first_new + 30)),
                   default=pushed_at)
    return {"first_new_s": None if first_new is None else round(first_new - pushed_at, 3),
            "last_old_s": round(last_old - pushed_at, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--via", choices=("admin", "poll"), default="admin")
    parser.add_argument("--steady-seconds", type=float, default=20)
    parser.add_argument("--push-every", type=float, default=4.0, help="seconds between pushes")
    args = parse_args(parser, steady_seconds=1, push_every=1.0)
    steady_s, every = args.steady_seconds, args.push_every
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    # two trainings of the default recipe (seeds 0 and 1): versions of one model, equally costly
    good = {"good A": trained_default28(), "good B": trained_default28(seed=1)}
    repo = WORK / "swap-repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "faces").mkdir(parents=True)
    copy_version(good["good A"], repo / "faces" / "1")
    keys = WORK / "swap-admin-keys"
    keys.write_text(ADMIN_KEY + "\n")
    ganserve = Path(sys.executable).parent / "ganserve"
    base = f"http://127.0.0.1:{PORT}"
    server = Server("swap-server", [str(ganserve), "serve", str(repo), "--port", str(PORT), "--host", "127.0.0.1",
                                    "--poll-seconds", "1" if args.via == "poll" else "0", "--admin-key-file",
                                    str(keys)], f"{base}/readyz")
    url = f"{base}/models/faces/generate"
    try:
        server.wait_ready()
        before = wrk(url, steady_s)
        probe = Probe(url)
        probe.start()
        pushes, window = [], len(PUSHES) * every + 2 * every
        load = {}
        loader = threading.Thread(target=lambda: load.update(wrk(url, window)))
        loader.start()
        time.sleep(every)
        live = "1"
        for version, kind in PUSHES:
            pushed_at = time.monotonic()
            push(repo, version, kind, good)
            record = {"version": version, "kind": kind}
            if args.via == "admin":
                answer = httpx.post(f"{base}/admin/models/faces/load", json={"version": version}, timeout=120,
                                    headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                body = answer.json()
                record.update(status=answer.status_code, outcome=body.get("outcome"), reason=body.get("reason"),
                              answered_s=round(time.monotonic() - pushed_at, 3),
                              workers_converged_s=body.get("converged_s"), converged=body.get("converged"))
            time.sleep(max(0.0, every - (time.monotonic() - pushed_at)))
            if kind.startswith("good"):
                record.update(switch_times(probe.seen, pushed_at, version, live))
                live = version
            pushes.append(record)
        loader.join()
        probe.stop.set()
        after = wrk(url, steady_s)
        view = httpx.get(f"{base}/models").json()
    finally:
        server.stop()
    faces = next(m for m in view["models"] if m["name"] == "faces")
    verdicts = {v["version"]: v for v in faces["versions"]}
    passed = sorted({v for v, entry in verdicts.items() if entry["state"] != "refused"}, key=int)
    served = set(load["versions"]) | set(before["versions"]) | set(after["versions"])
    probe_statuses = sorted({str(status) for _, status, _ in probe.seen})
    result = {
        "via": args.via, "clients": 32, "pushes": len(PUSHES), "push_every_s": every,
        "steady_before": before, "during_swaps": load, "steady_after": after,
        "probe": {"requests": len(probe.seen), "statuses": probe_statuses},
        "pushed": pushes,
        "refused": {v: {"stage": e["refused"]["stage"], "reason": e["refused"]["reason"]}
                    for v, e in verdicts.items() if e["state"] == "refused"},
        "passed_versions": passed, "served_versions": sorted(served, key=int),
        "every_answer_from_a_passed_version": served <= set(passed),
        "p99_ratio_swaps_to_steady": round(load["p99_ms"] / max(before["p99_ms"], after["p99_ms"]), 2),
    }
    path = write_result(f"swap-{args.via}", result)
    print(json.dumps({k: result[k] for k in ("served_versions", "passed_versions",
                                             "every_answer_from_a_passed_version", "refused")}, indent=1))
    for name in ("steady_before", "during_swaps", "steady_after"):
        r = result[name]
        print(f"{name:>14}: {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
              f"non-2xx {r['non_2xx']}  socket errors {r['socket_errors']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
