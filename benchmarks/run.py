"""`make bench`: every benchmark, then the results table in benchmarks/README.md.

    python -m benchmarks.run [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs")
    args = parser.parse_args()
    quick = ["--repeats", "2"] if args.quick else []
    steps = [
        ["engine.engine_bench", *quick],
        ["server.cold_start", *(["--repeats", "2"] if args.quick else [])],
        ["server.http_bench", *(["--repeats", "1", "--seconds", "3"] if args.quick else [])],
    ]
    for step in steps:
        print(f"== {step[0]}", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{step[0]}", *step[1:]], check=True, cwd=ROOT)
    subprocess.run([sys.executable, "-m", "benchmarks.report"], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
