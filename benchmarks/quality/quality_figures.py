"""The figures docs/quality.md shows for a quality study: FD against one core's seconds for
every run (from --curves), and the last sample grids of two recipes side by side; and the
default model's picture (seeds 0-99 next to the first 100 real digits) and a conditional
model's class blends.

    python -m benchmarks.quality.quality_figures results/quality-mnist28-resnet.json --grids default resnet-w16-lazy8
    python -m benchmarks.quality.quality_figures --digits-sheet models/digits
    python -m benchmarks.quality.quality_figures --interpolation-sheet models/cdigits

Several results files of one data set are pooled (their runs together), as `quality_study.py --table` pools them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import WORK, parse_args
from serving.formats.pixels import to_levels

GANSERVE = str(Path(sys.executable).with_name("ganserve"))

DOCS = Path(__file__).resolve().parents[2] / "docs"


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
    axes.set_title(f"{result.get('title') or result['data']}: every seed of every recipe")
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def grids(result: dict, recipes: list[str], out: Path, real: str | None = None, seed: int = 0) -> None:
    """The last sample grid of each recipe's run of `seed`, side by side; with `real` (a --data spec),
    64 real images last, drawn as the grids are."""
    tag = result["data"].replace(":", "-").replace("/", "_").strip("._-")
    pictures = []
    for recipe in recipes:
        folder = WORK / "quality" / tag / f"{recipe}-seed{seed}" / "samples"
        pictures.append(Image.open(sorted(folder.glob("step-*.png"))[-1]).convert("RGB"))
    if real:
        from training.data import load_dataset
        from training.samples import save_grid

        with tempfile.TemporaryDirectory() as folder:
            save_grid(load_dataset(real).batch(range(64)), Path(folder) / "real.png", columns=8)
            pictures.append(Image.open(Path(folder) / "real.png").convert("RGB").resize(pictures[0].size))
    gap = 16
    sheet = Image.new("RGB", (sum(p.width for p in pictures) + gap * (len(pictures) - 1),
                              max(p.height for p in pictures)), "white")
    x = 0
    for picture in pictures:
        sheet.paste(picture, (x, 0))
        x += picture.width + gap
    sheet.save(out)


def tile(images: np.ndarray, columns: int = 10, scale: int = 6, pad: int = 1) -> Image.Image:
    """(N, H, W) uint8 -> one greyscale grid with `pad` black pixels between images, each pixel
    `scale` x `scale` (nearest: the pixels stay visible)."""
    n, height, width = images.shape
    rows = -(-n // columns)
    sheet = np.zeros((rows * (height + pad) + pad, columns * (width + pad) + pad), np.uint8)
    for i, image in enumerate(images):
        top, left = pad + i // columns * (height + pad), pad + i % columns * (width + pad)
        sheet[top:top + height, left:left + width] = image
    return Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)


def digits_sheet(model: Path, out: Path) -> None:
    """Seeds 0-99 of an exported digits model (left) beside the first 100 real digits (right)."""
    from training.data import load_dataset

    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([GANSERVE, "sample", str(model), "--seeds", "0-99",
                        "--format", "npz", "--out", folder, "--no-progress"], check=True)
        generated = np.concatenate([np.load(part)["images"] for part in sorted(Path(folder).glob("*.npz"))])
    real = to_levels(load_dataset("digits").pixels[:100]).astype(np.uint8)  # (100, 1, 8, 8)
    pictures = [tile(generated.reshape(100, 8, 8)), tile(real.reshape(100, 8, 8))]
    gap = 36
    sheet = Image.new("L", (pictures[0].width * 2 + gap, pictures[0].height), 128)
    sheet.paste(pictures[0], (0, 0))
    sheet.paste(pictures[1], (pictures[0].width + gap, 0))
    sheet.save(out)


CLASS_BLENDS = [(0, 1), (1, 7), (3, 8), (4, 9)]  # the rows of docs/label-interpolation.png


def interpolation_sheet(model: Path, out: Path, seed: int = 5, frames: int = 10) -> None:
    """One row per class pair: seed `seed` of a conditional model, its class blended from one to the other."""
    strips = []
    with tempfile.TemporaryDirectory() as folder:
        for first, last in CLASS_BLENDS:
            strip = Path(folder) / f"{first}-{last}.png"
            subprocess.run([GANSERVE, "interpolate", str(model),
                            "--from", str(seed), "--to", str(seed), "--label", str(first), "--label-to", str(last),
                            "--frames", str(frames), "--out", str(strip)], check=True, stdout=subprocess.DEVNULL)
            strips.append(np.asarray(Image.open(strip).convert("L")))
    sheet = np.concatenate(strips)
    Image.fromarray(sheet).resize((sheet.shape[1] * 6, sheet.shape[0] * 6), Image.NEAREST).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="*", metavar="RESULT.json")
    parser.add_argument("--grids", nargs="+", metavar="RECIPE", default=[])
    parser.add_argument("--only", nargs="+", metavar="RECIPE",
                        help="draw the curves of these recipes only (results files often hold others too)")
    parser.add_argument("--name", default="quality-resnet", help="docs/NAME-curves.png, docs/NAME-grids.png")
    parser.add_argument("--title", help="what the curves' title calls the data (default: its --data spec)")
    parser.add_argument("--grid-seed", type=int, default=0, help="with --grids: the training seed drawn (default: 0)")
    parser.add_argument("--real", metavar="SPEC", help="with --grids: 64 real images of this --data spec, last")
    parser.add_argument("--digits-sheet", type=Path, metavar="MODEL",
                        help="write docs/digits-samples.png from this exported digits model instead")
    parser.add_argument("--interpolation-sheet", type=Path, metavar="MODEL",
                        help="write docs/label-interpolation.png from this conditional digits model instead")
    args = parse_args(parser)
    docs = WORK / "quick-docs" if args.quick else DOCS
    docs.mkdir(parents=True, exist_ok=True)
    if args.digits_sheet or args.interpolation_sheet:
        for model, draw, name in ((args.digits_sheet, digits_sheet, "digits-samples.png"),
                                  (args.interpolation_sheet, interpolation_sheet, "label-interpolation.png")):
            if model:
                draw(model, docs / name)
                print("wrote", docs / name)
        return
    if not args.results:
        parser.error("give RESULT.json files, --digits-sheet MODEL or --interpolation-sheet MODEL")
    loaded = [json.loads(path.read_text()) for path in args.results]
    runs = [run for one in loaded for run in one["runs"] if not args.only or run["recipe"] in args.only]
    result = {**loaded[0], "runs": runs, "title": args.title}
    curves(result, docs / f"{args.name}-curves.png")
    if args.grids:
        grids(result, args.grids, docs / f"{args.name}-grids.png", args.real, args.grid_seed)
    print("wrote", docs / f"{args.name}-curves.png", *([docs / f"{args.name}-grids.png"] if args.grids else []))


if __name__ == "__main__":
    main()
