"""Training step time with the networks and batches in channels_last (NHWC) against the default
contiguous (NCHW) layout: same config, same seed, same process, interleaved rounds.

    python -m benchmarks.training_speed.channels_last [--threads 1] [--rounds 6]

Writes results/channels-last.json. These figures choose each architecture's layout
(training/loop.py LAYOUTS)."""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import parse_args, summary, write_result
from training import distributed
from training.config import TrainConfig
from training.data import load_dataset
from training.loop import Trainer

# (name, resolution, channels, arch, steps per round as a multiple of --steps): `make serve`'s 8 px
# digits, the quality study's 28 px and a 64 px RGB photo size; slower steps get fewer
CASES = [("dcgan-8px", 8, 1, "dcgan", 5), ("dcgan-28px", 28, 1, "dcgan", 1), ("dcgan-64px-rgb", 64, 3, "dcgan", 0.25),
         ("resnet-28px", 28, 1, "resnet", 0.25)]


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - start) / steps


def measure(resolution: int, channels: int, arch: str, rounds: int, steps: int) -> dict:
    config = TrainConfig(data="digits", resolution=resolution, channels=channels, arch=arch)
    data = load_dataset(config.data, resolution, channels)  # the built-in digits, resized: speed, not quality
    ctx = distributed.init("cpu")
    trainers = {"contiguous": Trainer(config, data, ctx), "channels_last": Trainer(config, data, ctx)}
    trainers["contiguous"].use_layout(torch.contiguous_format)
    trainers["channels_last"].use_layout(torch.channels_last)
    for trainer in trainers.values():  # warm-up: allocator, kernels chosen
        seconds_per_step(trainer, max(2, steps // 3))
    times = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            times[name].append(seconds_per_step(trainer, steps))
    speedups = [a / b for a, b in zip(times["contiguous"], times["channels_last"])]
    return {"batch_size": config.batch_size, "steps_per_round": steps,
            "ms_per_step": {name: summary([t * 1000 for t in ts]) for name, ts in times.items()},
            "speedup": summary(speedups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the quality study)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="steps per layout per round (default 20)")
    args = parse_args(parser, rounds=1, steps=2)
    torch.set_num_threads(args.threads)
    cases = {}
    for name, resolution, channels, arch, share in CASES:
        steps = max(3, round(args.steps * share))
        cases[name] = measure(resolution, channels, arch, args.rounds, steps)
        speedup = cases[name]["speedup"]
        print(f"{name}: a channels_last step is {speedup['median']:.2f}x as fast "
              f"({speedup['min']:.2f}-{speedup['max']:.2f} over {args.rounds} rounds)", flush=True)
    path = write_result("channels-last", {"threads": args.threads, "rounds": args.rounds, "cases": cases})
    print("wrote", path)


if __name__ == "__main__":
    main()
