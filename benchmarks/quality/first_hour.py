"""The first hour on one's own photos, replayed: a folder like a new user's (509 crops of the
two photos that ship with scikit-learn, PNG and JPEG, odd sizes, one greyscale, one RGBA, one
WebP, one corrupt file, two class sub-folders), then the README's steps: train, export, eval,
sample. Records what each step printed and the figures to results/first-hour.json.

With --photos FOLDER (a user's folder of 64 px photos), the default recipe on it instead, for
--minutes of the machine (its speed measured first): the figures of `ganserve eval` and the
sample grid at each of those minutes, to results/first-hour-photos.json and its grids.

    python -m benchmarks.quality.first_hour [--steps 1200] [--threads 1]
    python -m benchmarks.quality.first_hour --photos FACES --minutes 30 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import WORK, parse_args, write_result

GANSERVE = str(Path(sys.executable).with_name("ganserve"))


def build_folder(folder: Path, count: int = 509) -> None:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # china.jpg and flower.jpg, 427x640 RGB
    rng = np.random.default_rng(0)
    for i in range(count):
        label = "china" if i % 2 == 0 else "flower"
        photo = photos[i % 2]
        height, width = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        top, left = int(rng.integers(0, photo.shape[0] - height)), int(rng.integers(0, photo.shape[1] - width))
        image = Image.fromarray(photo[top:top + height, left:left + width])
        (folder / label).mkdir(parents=True, exist_ok=True)
        if i == 0:
            image.convert("L").save(folder / label / f"{i:04d}.png")
        elif i == 1:
            image.convert("RGBA").save(folder / label / f"{i:04d}.png")
        elif i == 2:
            image.save(folder / label / f"{i:04d}.webp")
        else:
            image.save(folder / label / f"{i:04d}.{'png' if i % 3 else 'jpg'}")
    (folder / "flower" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")


def step(name: str, command: list[str], env: dict) -> dict:
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = round(time.perf_counter() - started, 1)
    print(f"--- {name}: exit {run.returncode} in {seconds} s\n{run.stdout[-3000:]}{run.stderr[-3000:]}", flush=True)
    return {"command": " ".join(command[1:]), "exit": run.returncode, "seconds": seconds,
            "stdout": run.stdout[-4000:], "stderr": run.stderr[-4000:]}


def photos_hour(folder: Path, minutes: list[int], threads: int, images_per_s: float | None = None) -> None:
    """The default recipe on a photo folder: speed first (80 steps; or `images_per_s`, measured
    before on an idle machine), then one run whose evaluations, grids and states fall at each of
    `minutes` of that speed."""
    root = WORK / "first-hour-photos"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    data = f"folder:{folder}"
    speed = {"given": images_per_s}
    if images_per_s is None:
        speed = step("speed", [GANSERVE, "train", "--data", data, "--steps", "80", "--log-every", "20",
                               "--run-dir", str(root / "speed"), "--no-progress"], env)
        rates = [json.loads(line)["images_per_s"]
                 for line in (root / "speed" / "metrics.jsonl").read_text().splitlines()]
        images_per_s = sorted(rates[1:])[len(rates[1:]) // 2]
    every = round(minutes[0] * 60 * images_per_s / 64)  # steps in the first mark's minutes
    marks = [every * (m // minutes[0]) for m in minutes]  # evaluations fall every `every` steps
    run_dir = root / "run"
    training = step("train", [GANSERVE, "train", "--data", data, "--steps", str(marks[-1]), "--eval-every",
                              str(every), "--eval-samples", "2000", "--sample-every", str(every),
                              "--checkpoint-every", str(every), "--keep-checkpoints", str(len(marks) + 1),
                              "--log-every", "100", "--run-dir", str(run_dir), "--no-progress"], env)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    figures = {r["step"]: r["eval"] for r in records if "eval" in r}
    write_result("first-hour-photos", {
        "threads": threads, "images_per_s": images_per_s, "speed": speed, "train": training,
        "marks": [{"minutes": m, "step": s, "eval": figures.get(s), "grid": f"samples/step-{s:08d}.png"}
                  for m, s in zip(minutes, marks)],
        "losses": [{k: r[k] for k in ("step", "loss_d", "loss_g", "d_real", "d_fake", "diversity") if k in r}
                   for r in records if "loss_d" in r]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leaves a core to other work)")
    parser.add_argument("--photos", type=Path, metavar="FOLDER", help="the default recipe on this photo folder")
    parser.add_argument("--minutes", type=int, nargs="+", default=[30, 60],
                        help="with --photos: the minutes of this machine at which to evaluate (default: 30 60)")
    parser.add_argument("--images-per-s", type=float,
                        help="with --photos: the speed measured before on this machine, idle (default: measure it "
                             "first; a busy machine would measure too few steps)")
    args = parse_args(parser, steps=12)
    if any(m % args.minutes[0] for m in args.minutes):
        parser.error(f"--minutes: each must be a multiple of the first ({args.minutes[0]}), as 30 60")
    if args.photos:
        photos_hour(args.photos, args.minutes, args.threads, args.images_per_s)
        return
    root = WORK / "first-hour"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    build_folder(root / "photos")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GANSERVE_CACHE": str(root / "cache")}
    data = f"folder:{root / 'photos'}"
    every = str(max(1, args.steps // 6))
    evals = [] if args.quick else ["--eval-every", every]  # --quick: no evaluations
    steps = {
        "train dcgan 32 px (the default recipe)": [GANSERVE, "train", "--data", data, "--resolution", "32",
                                                   "--steps", str(args.steps), *evals,
                                                   "--log-every", "100", "--run-dir", str(root / "runs/dcgan"),
                                                   "--no-progress"],
        "train dcgan 32 px --augment flip,translation": [
            GANSERVE, "train", "--data", data, "--resolution", "32", "--steps", str(args.steps), *evals,
            "--augment", "flip,translation", "--log-every", "100", "--run-dir", str(root / "runs/flip"),
            "--no-progress"],
        "train resnet 32 px (--width 16 --penalty-every 8)": [
            GANSERVE, "train", "--data", data, "--resolution", "32", "--arch", "resnet", "--width", "16",
            "--penalty-every", "8", "--steps", str(args.steps // 3), *evals,
            "--log-every", "100", "--run-dir", str(root / "runs/resnet"), "--no-progress"],
        "train dcgan 64 px (speed only)": [GANSERVE, "train", "--data", data, "--resolution", "64",
                                           "--steps", "6" if args.quick else "60", "--log-every", "20",
                                           "--run-dir", str(root / "runs/dcgan64"), "--no-progress"],
        "export": [GANSERVE, "export", str(root / "runs/dcgan"), "--out", str(root / "models/photos")],
        "eval the exported model": [GANSERVE, "eval", str(root / "models/photos"), "--num-samples", "250"],
        "sample": [GANSERVE, "sample", str(root / "models/photos"), "--seeds", "0-199", "--out",
                   str(root / "samples"), "--no-progress"],
        "sample again without --resume": [GANSERVE, "sample", str(root / "models/photos"), "--seeds", "0-9",
                                          "--out", str(root / "samples"), "--no-progress"],
    }
    if args.quick:  # the default recipe's path only, without evaluations: train, export, sample
        steps = {name: command for name, command in steps.items()
                 if "(the default recipe)" in name or not name.startswith(("train", "eval"))}
    results = {name: step(name, command, env) for name, command in steps.items()}
    for name in [name for name in steps if name.startswith("train")]:
        run_dir = Path(steps[name][steps[name].index("--run-dir") + 1])
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        results[name]["curve"] = [{"step": r["step"], "diversity": r.get("diversity"),
                                   "diversity_real": r.get("diversity_real"), "images_per_s": r.get("images_per_s"),
                                   **({"fd": r["eval"]["fd"]} if "eval" in r else {})} for r in records]
        results[name]["collapse_warned"] = bool(re.search("collapsed", results[name]["stderr"]))
    write_result("first-hour", {"steps": args.steps, "threads": args.threads, "results": results})


if __name__ == "__main__":
    main()
