"""`make bench`: every benchmark, then the results table in benchmarks/README.md.

    python benchmarks/run.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs")
    args = parser.parse_args()
    quick = ["--repeats", "2"] if args.quick else []
    steps = [
        ["engine_bench.py", *quick],
        ["cold_start.py", *(["--repeats", "2"] if args.quick else [])],
        ["http_bench.py", *(["--repeats", "1", "--seconds", "3"] if args.quick else [])],
    ]
    for step in steps:
        print(f"== {step[0]}", flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True, cwd=HERE)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True)


if __name__ == "__main__":
    main()
