"""The figures docs/quality.md shows for a quality study: FD against one core's seconds for
every run (from --curves), and the last sample grids of two recipes side by side.

    python benchmarks/quality_figures.py results/quality-mnist28-resnet.json --grids default resnet-w16-lazy8

Several results files of one data set are pooled (their runs together), as `quality_study.py --table` pools them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from common import WORK

DOCS = Path(__file__).resolve().parents[1] / "docs"


def curves(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    colours = {}
    for run in result["runs"]:
        points = run.get("curve") or []
        colour = colours.setdefault(run["recipe"], f"C{len(colours)}")
        axes.plot([p["core_seconds"] / 60 for p in points], [p["fd"] for p in points], marker="o", color=colour,
                  label=run["recipe"] if run["seed"] == min(r["seed"] for r in result["runs"]) else None)
    axes.set_xlabel("minutes of one core")
    axes.set_ylabel("Fréchet distance (1,000 images)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", ncol=2)  # two columns: a study of many recipes keeps its curves visible
    axes.set_title(f"{result['data']}: every seed of every recipe")
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def grids(result: dict, recipes: list[str], out: Path) -> None:
    tag = result["data"].replace(":", "-").replace("/", "_").strip("._-")
    pictures = []
    for recipe in recipes:
        folder = WORK / "quality" / tag / f"{recipe}-seed0" / "samples"
        pictures.append(Image.open(sorted(folder.glob("step-*.png"))[-1]).convert("RGB"))
    gap = 16
    sheet = Image.new("RGB", (sum(p.width for p in pictures) + gap * (len(pictures) - 1),
                              max(p.height for p in pictures)), "white")
    x = 0
    for picture in pictures:
        sheet.paste(picture, (x, 0))
        x += picture.width + gap
    sheet.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", metavar="RESULT.json")
    parser.add_argument("--grids", nargs="+", metavar="RECIPE", default=[])
    parser.add_argument("--name", default="quality-resnet", help="docs/NAME-curves.png, docs/NAME-grids.png")
    args = parser.parse_args()
    loaded = [json.loads(path.read_text()) for path in args.results]
    result = {**loaded[0], "runs": [run for one in loaded for run in one["runs"]]}
    curves(result, DOCS / f"{args.name}-curves.png")
    if args.grids:
        grids(result, args.grids, DOCS / f"{args.name}-grids.png")
    print("wrote", DOCS / f"{args.name}-curves.png", *([DOCS / f"{args.name}-grids.png"] if args.grids else []))


if __name__ == "__main__":
    main()
