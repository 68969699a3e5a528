"""Does an evaluation's feature space rank known degradations correctly? (ganserve eval's metric, validated)

For each seed (the feature network's and the real halves' draw), the figures of `ganserve eval`
against one half of the real images, for: the other half (the floor), that half blurred x2 and
x4, through JPEG quality 20, one image repeated, uniform noise, and generators at given steps
of a run. A feature space passes where every ordered pair of training/degradations.py holds
(the stronger degradation farther), the models rank by their step (later nearer), and on every
seed. With --features both, the rank agreement of the two spaces over every set is reported
(Spearman's rho of their FDs).

    python -m benchmarks.quality.eval_validation --data folder:FACES --features contrastive \
        --models "500=RUN:500,2000=RUN:2000" --seeds 0,1,2 --name eval-validation-faces
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from benchmarks.common import machine, parse_args, result_path
from training.checkpoints import load_state, state_path
from training.data import load_dataset
from training.degradations import DEGRADATIONS, ORDERED_PAIRS
from training.evaluate import Comparison, ratio_to_floor
from training.release import read_release


def generator_at(run_dir: Path, step: int) -> tuple[torch.nn.Module, int]:
    """G_ema of a run at a step (its state file), and its latent size."""
    release = read_release(run_dir / "release")
    generator = release.build_generator()
    generator.load_state_dict(load_state(state_path(run_dir, step))["G_ema"], strict=True)
    return generator.float().eval(), release.spec.latent_dim


def parse_models(text: str) -> dict[str, tuple[Path, int]]:
    """'500=runs/a:500,2000=runs/a:2000' -> {"500": (Path("runs/a"), 500), ...}."""
    models = {}
    for part in filter(None, text.split(",")):
        label, where = part.split("=", 1)
        run, step = where.rsplit(":", 1)
        models[label] = (Path(run), int(step))
    return models


def evaluate_sets(data, kind: str, seed: int, count: int, models: dict) -> dict[str, dict]:
    comparison = Comparison(data, count, seed, features=kind)
    real = comparison.real_b
    sets = {"real vs real": real, **{name: degrade(real) for name, degrade in DEGRADATIONS.items()}}
    for label, (run, step) in models.items():
        generator, latent_dim = generator_at(run, step)
        sets[f"model {label}"] = comparison.generated_by(generator, latent_dim, 0)
    figures = {}
    for name, images in sets.items():
        figures[name] = {k: v for k, v in comparison.figures(images).items() if k != "class_histogram"}
    floor = figures["real vs real"]["fd"]
    for values in figures.values():
        values["ratio_to_floor"] = ratio_to_floor(values["fd"], floor)
    return figures


def checks(figures: dict, model_labels: list[str]) -> dict[str, bool]:
    """Every expected ordering, by FD: True where it holds."""
    pairs = list(ORDERED_PAIRS) + [(f"model {later}", f"model {earlier}")
                                   for earlier, later in zip(model_labels, model_labels[1:])]
    pairs += [("real vs real", f"model {label}") for label in model_labels]
    return {f"{a} < {b}": figures[a]["fd"] < figures[b]["fd"] for a, b in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--features", default="contrastive", choices=["contrastive", "classifier", "both"])
    parser.add_argument("--models", default="", help="LABEL=RUN_DIR:STEP,... from earliest to latest step")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--name", default="eval-validation")
    args = parse_args(parser, data="digits", features="classifier", seeds="0", num_samples=200)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    models = parse_models(args.models)
    kinds = ["contrastive", "classifier"] if args.features == "both" else [args.features]
    results, start = {}, time.perf_counter()
    for kind in kinds:
        for seed in map(int, args.seeds.split(",")):
            figures = evaluate_sets(data, kind, seed, args.num_samples, models)
            passed = checks(figures, list(models))
            results[f"{kind} seed {seed}"] = {"figures": figures, "checks": passed, "all_pass": all(passed.values())}
            failed = [name for name, holds in passed.items() if not holds]
            print(f"\n{kind}, seed {seed}: " + ("FAILED: " + ", ".join(failed) if failed else "every ordering holds"))
            for name, values in figures.items():
                print(f"  {name:<20} FD {values['fd']:>10.4g}  x floor {values['ratio_to_floor'] or '-':>8}  "
                      f"precision {values['precision']:.3f}  recall {values['recall']:.3f}  "
                      f"coverage {values['coverage']:.3f}")
    if len(kinds) == 2:
        for seed in map(int, args.seeds.split(",")):
            a, b = (results[f"{kind} seed {seed}"]["figures"] for kind in kinds)
            rho = spearmanr([a[k]["fd"] for k in a], [b[k]["fd"] for k in a]).statistic
            results[f"rank agreement seed {seed}"] = round(float(rho), 4)
            print(f"seed {seed}: Spearman rho of contrastive vs classifier FDs over {len(a)} sets: {rho:.3f}")
    out = result_path(args.name)
    out.write_text(json.dumps({"machine": machine(), "data": args.data, "num_samples": args.num_samples,
                               "models": args.models, "seconds": round(time.perf_counter() - start, 1),
                               "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
