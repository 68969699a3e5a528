"""The engine and sampler benchmarks (engine_bench.py) of two source trees, interleaved: each
round runs the old tree's own script, then the new tree's, on the same models; the summary
gives each figure's median over the rounds and the after/before ratio.

    python benchmarks/ab_engine.py --before /tmp/ganserve-before --after . --rounds 3 --name ab-engine

Writes results/NAME.json. The rounds' raw files stay in the work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import WORK, write_result


def run_rounds(trees: dict[str, Path], rounds: int, repeats: int) -> Path:
    raw = WORK / "ab-engine"
    raw.mkdir(parents=True, exist_ok=True)
    for round_number in range(1, rounds + 1):
        for side, tree in trees.items():
            bench = tree.resolve() / "benchmarks"
            subprocess.run([sys.executable, "engine_bench.py", "--repeats", str(repeats)], cwd=bench, check=True,
                           env={"PYTHONPATH": str(tree.resolve()), "PATH": "/usr/bin:/bin"})
            for kind in ("engine", "sampler"):
                shutil.copy(bench / "results" / f"{kind}.json", raw / f"{kind}-{side}-{round_number}.json")
    return raw


def summarise(raw: Path, rounds: int) -> dict:
    """Median over rounds of every figure both trees report, and after/before."""
    def figures(side: str) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for round_number in range(1, rounds + 1):
            engine = json.loads((raw / f"engine-{side}-{round_number}.json").read_text())
            for row in engine["rows"]:
                key = f"engine {row['model']} batch {row['batch']} images/s"
                found.setdefault(key, []).append(row["engine_images_per_s"]["median"])
            sampler = json.loads((raw / f"sampler-{side}-{round_number}.json").read_text())
            for kind, stats in sampler["images_per_s"].items():
                found.setdefault(f"sampler {kind} images/s", []).append(stats["median"])
        return found

    before, after = figures("before"), figures("after")
    rows = []
    for key in before:
        if key in after:
            b, a = statistics.median(before[key]), statistics.median(after[key])
            rows.append({"figure": key, "before": round(b, 1), "after": round(a, 1), "after_vs_before": round(a / b, 3),
                         "before_runs": before[key], "after_runs": after[key]})
    return {"rounds": rounds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="engine_bench.py --repeats")
    parser.add_argument("--summarise-only", type=Path, metavar="RAW_DIR", help="summarise rounds already run")
    parser.add_argument("--name", default="ab-engine")
    args = parser.parse_args()
    raw = args.summarise_only or run_rounds({"before": args.before, "after": args.after}, args.rounds, args.repeats)
    result = summarise(raw, args.rounds)
    for row in result["rows"]:
        print(f"{row['figure']:42} {row['before']:9.1f} -> {row['after']:9.1f}  ({row['after_vs_before']:.3f})")
    write_result(args.name, result)


if __name__ == "__main__":
    main()
