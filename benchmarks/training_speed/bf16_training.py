"""Training step time in bfloat16 autocast against float32, on this CPU: same config, same
seed, same process, interleaved rounds (as channels_last.py measures layouts).

    python -m benchmarks.training_speed.bf16_training [--threads 1] [--rounds 6] [--quick]

Writes results/bf16-training.json, with the CPU and its native bfloat16 (AMX, AVX-512 BF16 or
none). With the quality study at an equal budget, these figures choose each architecture's CPU
default (training/precision.py CPU_BF16_WINS).
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import parse_args, summary, write_result
from training import distributed
from training.config import TrainConfig
from training.data import load_dataset
from training.loop import Trainer
from training.precision import cpu_bf16

# (name, resolution, channels, arch, width, steps per round as a share of --steps)
CASES = [("dcgan-8px", 8, 1, "dcgan", None, 1), ("dcgan-28px", 28, 1, "dcgan", None, 1),
         ("dcgan-64px-rgb", 64, 3, "dcgan", None, 0.25),
         ("dcgan-64px-rgb-w64", 64, 3, "dcgan", 64, 0.1), ("resnet-28px", 28, 1, "resnet", None, 0.25),
         ("resnet-64px-rgb", 64, 3, "resnet", None, 0.1), ("mlp-28px", 28, 1, "mlp", None, 1)]


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - start) / steps


def measure(resolution: int, channels: int, arch: str, width: int | None, rounds: int, steps: int) -> dict:
    data = load_dataset("digits", resolution, channels)  # the built-in digits, resized: speed, not quality
    ctx = distributed.init("cpu")
    trainers = {amp: Trainer(TrainConfig(data="digits", resolution=resolution, channels=channels, arch=arch,
                                         width=width, amp=amp), data, ctx) for amp in ("off", "on")}
    for trainer in trainers.values():  # warm-up: allocator, kernels chosen
        seconds_per_step(trainer, max(2, steps // 3))
    times = {amp: [] for amp in trainers}
    for _ in range(rounds):
        for amp, trainer in trainers.items():
            times[amp].append(seconds_per_step(trainer, steps))
    speedups = [a / b for a, b in zip(times["off"], times["on"])]
    return {"batch_size": trainers["on"].config.batch_size, "width": trainers["on"].config.width,
            "steps_per_round": steps, "precision_on": trainers["on"].precision.name,
            "ms_per_step": {("float32" if amp == "off" else "bfloat16"): summary([t * 1000 for t in ts])
                            for amp, ts in times.items()},
            "speedup": summary(speedups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the quality study)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="steps per precision per round (default 20)")
    parser.add_argument("--cases", help="comma list of " + ", ".join(case[0] for case in CASES) + " (default: all)")
    parser.add_argument("--name", default="bf16-training", help="results file name (results/NAME.json)")
    args = parse_args(parser, rounds=1, steps=4)  # and the first two cases
    torch.set_num_threads(args.threads)
    native = cpu_bf16()
    if native is None:
        print("this CPU has no native bfloat16: --amp on trains in float32, nothing to measure")
    chosen = [case for case in CASES if case[0] in args.cases.split(",")] if args.cases else CASES
    cases, chosen = {}, chosen[:2] if args.quick else chosen
    rounds, steps = args.rounds, args.steps
    for name, resolution, channels, arch, width, share in chosen if native else []:
        cases[name] = measure(resolution, channels, arch, width, rounds, max(3, round(steps * share)))
        speedup = cases[name]["speedup"]
        print(f"{name}: a bfloat16 step is {speedup['median']:.2f}x as fast as float32 "
              f"({speedup['min']:.2f}-{speedup['max']:.2f} over {rounds} rounds)", flush=True)
    path = write_result(args.name,
                        {"threads": args.threads, "rounds": rounds, "native_bf16": native, "cases": cases})
    print("wrote", path)


if __name__ == "__main__":
    main()
