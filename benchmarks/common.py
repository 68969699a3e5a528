"""Shared by the benchmark scripts: timing statistics, the machine description, results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(os.environ.get("GANSERVE_BENCH_WORK", "/tmp/ganserve-bench"))
QUICK = "GANSERVE_BENCH_QUICK"  # set by --quick, for models.py and the scripts' child processes


def quick() -> bool:
    return os.environ.get(QUICK) == "1"


def parse_args(parser, **shrunk):
    """`parser`'s arguments plus --quick: a check that the script still runs, in seconds, with the
    options named in `shrunk` as its defaults (tests/test_benchmarks.py runs every script so). Its
    figures mean nothing: models are trained a few steps (their own names in the work folder) and
    results go to WORK/quick-results/, never to results/."""
    shown = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in shrunk.items())
    parser.add_argument("--quick", action="store_true",
                        help=f"a check that the script runs ({shown or 'as it is'}, models trained a few steps; "
                             "results to the work folder)")
    if "--quick" in sys.argv[1:]:
        os.environ[QUICK] = "1"
        for action in parser._actions:  # argparse has no public way to relax a required option
            if action.dest in shrunk:
                action.required, action.default = False, shrunk[action.dest]
    return parser.parse_args()


def machine() -> dict:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "date": time.strftime("%Y-%m-%d")}


def summary(values: list[float]) -> dict:
    """Median and spread of repeated measurements."""
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


def best_rate(run, count: int, repeats: int = 5, min_seconds: float = 0.3) -> list[float]:
    """Items per second of `run()` (which processes `count` items), once per repeat; each
    repeat loops long enough to be timed reliably."""
    rates = []
    for _ in range(repeats):
        loops, start = 0, time.perf_counter()
        while True:
            run()
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(loops * count / elapsed)
    return rates


def result_path(name: str) -> Path:
    """results/NAME.json; under --quick, the work folder's quick-results/ (its figures mean nothing)."""
    folder = WORK / "quick-results" if quick() else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.json"


def write_result(name: str, payload: dict, path: Path | None = None) -> Path:
    """results/NAME.json, or `path` (a run on another machine writes where it can fetch from)."""
    path = path or result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "revision": git_revision(), **payload}  # which code was measured
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def git_revision() -> str:
    # A copy of the tree without .git (a lent GPU machine) is told its revision.
    if os.environ.get("GANSERVE_REVISION"):
        return os.environ["GANSERVE_REVISION"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"
