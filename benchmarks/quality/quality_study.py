"""Training recipes compared at an equal wall-clock budget, several seeds each.

Each recipe's speed is measured first, alone on an idle machine, on one core; its step count
is then budget x speed, so every recipe gets the same seconds of one core whatever else the
machine does while the runs proceed (two at a time by default, one core each; `--parallel N`
for more). Every finished run is scored with `ganserve eval RUN --json` and the figures go to
results/quality-DATA.json.

    python -m benchmarks.quality.quality_study --data digits --budget 120 --seeds 0 1 2
    python -m benchmarks.quality.quality_study --data idx:../shared/data --budget 360 --recipes tutorial w32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import WORK, parse_args, write_result
from training.config import TrainConfig

GANSERVE = str(Path(sys.executable).with_name("ganserve"))

# Every dcgan recipe names its learning rates, Adam's betas and batch: defaults change after the
# studies that measure them (dcgan's Adam 2e-4 became 5e-4, its beta1 0.5 became 0), and a recipe
# must keep meaning what was run.
B64 = ["--batch-size", "64"]
MOMENTUM = ["--beta1", "0.5", "--beta2", "0.999"]
NO_MOMENTUM = ["--beta1", "0.0", "--beta2", "0.99"]  # as BigGAN, StyleGAN2 and R3GAN train
# Every dcgan recipe below ran with its rates held for the whole run; the default decays them from 60% of it
# since (lr5e-4-beta0-decay60), so the rate lists pin the hold. A later --lr-decay-from overrides it.
HELD = ["--lr-decay-from", "1"]
RATE5 = ["--lr-g", "5e-4", "--lr-d", "5e-4", *HELD]
LR2 = ["--lr-g", "2e-4", "--lr-d", "2e-4", *MOMENTUM, *HELD]
LR5 = [*RATE5, *MOMENTUM]
# The tutorial recipe the quality issue names: plain DCGAN, non-saturating loss, Adam 2e-4 /
# beta1 0.5, no EMA, no spectral norm, no augmentation.
TUTORIAL = ["--width", "64", "--no-spectral-norm", "--ema-decay", "0", "--loss", "nonsat",
            *LR2, "--augment", "", *B64]
COSINE = ["--schedules", "--lr-decay-from", "0", "--lr-final", "2e-5", "--beta2-final", "0.999"]  # annealed rates,
# over the whole run (beta2 kept)
RECIPES = {
    "tutorial": TUTORIAL,
    "tutorial-w16": [*TUTORIAL[2:], "--width", "16"],  # the tutorial recipe at the default's width
    "default": [],  # whatever `ganserve train` does with no options
    # The first study (docs/quality.md, "Defaults chosen by measurement"): widths, EMA, spectral norm.
    "w64-ema-sn": ["--width", "64", "--spectral-norm", "--ema-decay", "0.999", *LR2, *B64],
    "w32-ema-sn": ["--width", "32", "--spectral-norm", "--ema-decay", "0.999", *LR2, *B64],
    "w32-ema": ["--width", "32", "--no-spectral-norm", "--ema-decay", "0.999", *LR2, *B64],
    "w16-ema-sn": ["--width", "16", "--spectral-norm", "--ema-decay", "0.999", *LR2, *B64],
    "w16-ema": ["--width", "16", "--no-spectral-norm", "--ema-decay", "0.999", *LR2, *B64],
    "w32-ema-sn-ttur": ["--width", "32", "--spectral-norm", "--ema-decay", "0.999",
                        "--lr-d", "4e-4", "--lr-g", "1e-4", *MOMENTUM, *HELD, *B64],
    "w32-ema-sn-hinge": ["--width", "32", "--spectral-norm", "--ema-decay", "0.999", "--loss", "hinge", *LR2, *B64],
    "w32-ema-sn-aug": ["--width", "32", "--spectral-norm", "--ema-decay", "0.999",
                       "--augment", "translation,color", *LR2, *B64],
    # Learning rate and batch of dcgan width 16 (docs/quality.md, "The learning rate and the batch").
    "lr2e-4": [*LR2, *B64],
    "lr5e-4": [*LR5, *B64],
    "lr1e-3": ["--lr-g", "1e-3", "--lr-d", "1e-3", *MOMENTUM, *HELD, *B64],
    "lr2e-4-cosine": [*LR2, *B64, *COSINE],
    "lr2e-4-cond": [*LR2, *B64, "--conditional"],
    "lr2e-4-cond-cosine": [*LR2, *B64, "--conditional", *COSINE],
    "lr2e-4-b32": [*LR2, "--batch-size", "32"],
    "lr5e-4-b32": [*LR5, "--batch-size", "32"],
    "lr5e-4-b16": [*LR5, "--batch-size", "16"],
    # twice the EMA horizon: 0.9995 at batch 32 averages over as many images as 0.999 at batch 64
    "lr5e-4-b32-ema9995": [*LR5, "--batch-size", "32", "--ema-decay", "0.9995"],
    # momentum off (the default since), and D seeing shifted digits (DiffAugment's translation)
    "lr5e-4-b32-beta0": [*RATE5, *NO_MOMENTUM, "--batch-size", "32"],
    "lr5e-4-b32-translate": [*LR5, "--batch-size", "32", "--augment", "translation"],
    "lr5e-4-beta0": [*RATE5, *NO_MOMENTUM, *B64],
    # the same flags, trained since dcgan trains in channels_last (training/loop.py LAYOUTS): the same
    # network in the same seconds takes more steps (its speed: lr5e-4-beta0's x the measured speedup)
    "lr5e-4-beta0-nhwc": [*RATE5, *NO_MOMENTUM, *B64],
    # the default's flags with its learning rates held for the first 60% of the run, then a half cosine down to a
    # tenth (the default's curves flattened, or rose, in their last third)
    "lr5e-4-beta0-decay60": [*RATE5, *NO_MOMENTUM, *B64, "--lr-decay-from", "0.6", "--lr-final", "5e-5"],
    # conditional dcgan since the class reaches G through conditional normalisation (the lr2e-4-cond
    # runs above are of the earlier G, which joined the class embedding to z and collapsed)
    "lr5e-4-cond": [*LR5, *B64, "--conditional"],
    "lr5e-4-b32-cond": [*LR5, "--batch-size", "32", "--conditional"],
    # the default in float32 and in bfloat16 autocast (--amp off / on): bfloat16 becomes dcgan's CPU default only
    # if it is faster and its FD no worse at the same budget (training/precision.py CPU_BF16_WINS)
    "default-fp32": ["--amp", "off"],
    "default-bf16": ["--amp", "on"],
    # R3GAN's recipe (docs/DESIGN.md): --arch resnet fills in rpgan, R1+R2, its schedules, EMA half-life
    "resnet": ["--arch", "resnet"],
    "resnet-w16": ["--arch", "resnet", "--width", "16"],
    "resnet-w64": ["--arch", "resnet", "--width", "64"],
    # R1/R2 every 8th D step (scaled by 8, as StyleGAN2's lazy regularisation): 2.2x the images/s
    "resnet-w16-lazy8": ["--arch", "resnet", "--width", "16", "--penalty-every", "8"],
    # 64 px photos (docs/quality.md, "Photos at 64 px"): spectral norm's D fell to chance (its gain on the images
    # to 4e-5, benchmarks/quality/d_diagnosis.py); R1 on real images, lazily every 16th D step, keeps D in check instead
    "photo-sn": ["--spectral-norm", "--r1-gamma", "0", "--penalty-every", "1"],  # dcgan's default before it
    "photo-r1": ["--no-spectral-norm", "--r1-gamma", "1", "--penalty-every", "16"],
    "photo-r1-flip": ["--no-spectral-norm", "--r1-gamma", "1", "--penalty-every", "16", "--augment", "flip"],
}
# Recipes that differ from another only in what costs nothing per step (a learning-rate schedule) take its
# measured speed under --speeds-from.
SAME_SPEED = {"lr5e-4-beta0-decay60": "lr5e-4-beta0-nhwc"}
CURVE_POINTS = 6  # evaluations per run (--eval-every), for the curves of FD against training time
QUIET = ["--no-progress", "--sample-every", "100000", "--checkpoint-every", "100000", "--log-every", "20"]


def one_core() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(run_dir: Path, data: str, recipe: list[str], steps: int, seed: int, curve: bool = False) -> None:
    every = str(max(1, steps // CURVE_POINTS))
    # with curves, the state at every evaluated step is kept too (eval_validation.py scores a run's models by step)
    evals = ["--eval-every", every, "--eval-samples", "1000", "--checkpoint-every", every,
             "--keep-checkpoints", str(CURVE_POINTS + 1)] if curve else []
    subprocess.run([GANSERVE, "train", "--data", data, *recipe, "--steps", str(steps), "--seed", str(seed),
                    "--run-dir", str(run_dir), *QUIET, *evals], check=True, env=one_core(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def batch_size(recipe: list[str]) -> int:
    """The recipe's own --batch-size, else ganserve train's."""
    if "--batch-size" in recipe:
        return int(recipe[recipe.index("--batch-size") + 1])
    return TrainConfig().batch_size


def curve(run_dir: Path, images_per_s: float, batch: int) -> list[dict]:
    """FD (1,000 images) against the seconds of one core spent, from --eval-every's records."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "core_seconds": round(r["step"] * batch / images_per_s, 1), "fd": r["eval"]["fd"]}
            for r in records if "eval" in r]


def warm_classifier(data: str) -> None:
    """Train (and cache) the data set's evaluation network (its classifier, or for unlabelled data its
    contrastive encoder) once, before two runs would both."""
    subprocess.run([sys.executable, "-c", "from training.data import load_dataset; from training.evaluate import "
                    f"feature_space; feature_space(load_dataset({data!r}))"], check=True, env=one_core())


def images_per_second(name: str, data: str, recipe: list[str]) -> float:
    """One core, idle machine: the median of the logged windows after the first (warm-up)."""
    run_dir = WORK / "quality" / "speed" / name
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    train(run_dir, data, recipe, steps=80, seed=0)
    rates = [json.loads(line)["images_per_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(rates[1:])


def evaluate(run_dir: Path, num_samples: int | None, seed: int = 0) -> dict:
    extra = ["--num-samples", str(num_samples)] if num_samples else []
    out = subprocess.run([GANSERVE, "eval", str(run_dir), "--json", "--seed", str(seed), *extra], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _mean(runs: list[dict], key: str) -> float:
    return statistics.mean(r["generated"][key] for r in runs)


def table(result: dict) -> str:
    """Markdown: one row per recipe, mean over seeds (min-max), and FD relative to the tutorial."""
    rows = {}
    for run in result["runs"]:
        rows.setdefault(run["recipe"], []).append(run)
    floor = statistics.mean(r["real_vs_real"]["fd"] for r in result["runs"])
    tutorial = statistics.mean(r["generated"]["fd"] for r in rows.get("tutorial", [])) if "tutorial" in rows else None
    by_eval_seed = all("fd_by_eval_seed" in r for r in result["runs"])
    lines = ["| recipe | steps | FD (min-max) | FD / floor | tutorial FD / FD | KID | precision | recall | coverage "
             "| classes (worst seed) |" + (" FD, mean over eval seeds (min-max) |" if by_eval_seed else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if by_eval_seed else "")]
    for name, runs in rows.items():
        fd = _mean(runs, "fd")
        fds = [r["generated"]["fd"] for r in runs]
        classes = min(r["generated"].get("classes_covered", 0) for r in runs)
        lines.append(
            f"| {name} | {result['steps'][name]} | {fd:.2f} ({min(fds):.2f}-{max(fds):.2f}) "
            f"| {fd / floor:.1f} | {(tutorial / fd) if tutorial else float('nan'):.2f} "
            f"| {_mean(runs, 'kid'):.4f} | {_mean(runs, 'precision'):.2f} | {_mean(runs, 'recall'):.2f} "
            f"| {_mean(runs, 'coverage'):.2f} | {classes} / {runs[0]['generated'].get('num_classes')} |"
            + (_over_eval_seeds(runs) if by_eval_seed else ""))
    lines.append(f"\nReal-vs-real floor: FD {floor:.2f}; {len(result['runs'])} runs, "
                 f"{result['budget_core_seconds']:.0f} s of one core each.")
    return "\n".join(lines)


def _over_eval_seeds(runs: list[dict]) -> str:
    """Each run's FD averaged over the eval seeds, then over the runs (the spread: the runs' means)."""
    means = [statistics.mean(r["fd_by_eval_seed"].values()) for r in runs]
    return f" {statistics.mean(means):.2f} ({min(means):.2f}-{max(means):.2f}) |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of one core per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=["tutorial", "default"], choices=sorted(RECIPES))
    parser.add_argument("--num-samples", type=int, default=4000,
                        help="images per set for eval, at most half the real data (default: 4000)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                        help="score each run with these `ganserve eval --seed`s too (other generated latents and "
                             "another draw of the real images; the first gives the reported figures; default: 0)")
    parser.add_argument("--name", help="results file name (default: quality-<data>)")
    parser.add_argument("--curves", action="store_true",
                        help=f"evaluate {CURVE_POINTS} times per run (1,000 images) for curves of FD against time "
                             "(costs wall time, not budget: the step counts are fixed beforehand)")
    parser.add_argument("--speeds-from", type=Path, metavar="RESULT.json",
                        help="reuse the one-core speeds measured by an earlier study instead of measuring")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score runs already trained into the work folder (with --speeds-from for the steps) "
                             "instead of training them")
    parser.add_argument("--parallel", type=int, default=2,
                        help="runs at a time, one core each (default: 2); more than the cores share them, "
                             "which costs wall time, not budget: the step counts are fixed beforehand")
    parser.add_argument("--table", type=Path, nargs="+", metavar="RESULT.json",
                        help="only print results files (same data and budget; their runs pooled) as Markdown")
    args = parse_args(parser, data="digits", budget=1.0, seeds=[0], recipes=["default"], num_samples=200)
    if args.table:
        results = [json.loads(path.read_text()) for path in args.table]
        pooled = {**results[0], "runs": [run for result in results for run in result["runs"]],
                  "steps": {k: v for result in results for k, v in result["steps"].items()}}
        print(table(pooled))
        return

    if args.speeds_from:  # more seeds for an earlier study: the same step counts
        measured = json.loads(args.speeds_from.read_text())["images_per_s_one_core"]
        speeds = {name: measured[name] if name in measured else measured[SAME_SPEED[name]] for name in args.recipes}
    else:
        speeds = {name: images_per_second(name, args.data, RECIPES[name]) for name in args.recipes}
    steps = {name: max(1, round(args.budget * speeds[name] / batch_size(RECIPES[name]))) for name in args.recipes}
    print("images/s on one core:", speeds, "\nsteps in the budget:", steps, flush=True)

    tag = args.data.replace(":", "-").replace("/", "_").strip("._-")
    jobs = [(name, seed, WORK / "quality" / tag / f"{name}-seed{seed}") for seed in args.seeds for name in args.recipes]
    if not args.evaluate_only:
        for _, _, run_dir in jobs:
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        warm_classifier(args.data)
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:  # one core each
            list(pool.map(lambda job: train(job[2], args.data, RECIPES[job[0]], steps[job[0]], job[1], args.curves),
                          jobs))

    runs = []
    for name, seed, run_dir in jobs:
        first, *others = args.eval_seeds
        figures = evaluate(run_dir, args.num_samples, first)
        fds = {str(first): figures["generated"]["fd"],
               **{str(s): evaluate(run_dir, args.num_samples, s)["generated"]["fd"] for s in others}}
        more = {"fd_by_eval_seed": fds} if others else {}
        runs.append({"recipe": name, "seed": seed, **figures, **more,
                     **({"curve": curve(run_dir, speeds[name], batch_size(RECIPES[name]))} if args.curves else {})})
        print(name, seed, {k: figures["generated"].get(k) for k in ("fd", "precision", "recall", "coverage",
                                                                    "classes_covered")}, flush=True)
    result = {"data": args.data, "budget_core_seconds": args.budget,
              "batch_sizes": {name: batch_size(RECIPES[name]) for name in args.recipes},
              "images_per_s_one_core": speeds, "steps": steps, "eval_seeds": args.eval_seeds,
              "recipes": {name: RECIPES[name] for name in args.recipes}, "runs": runs}
    write_result(args.name or f"quality-{tag}", result)
    print(table(result))


if __name__ == "__main__":
    main()
