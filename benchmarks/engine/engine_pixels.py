"""How far OpenVINO's pixels are from ONNX Runtime's float32 ones, on trained models of every
architecture and size: what sets the bfloat16 tolerance of the start-up spot check
(serving/formats/spot_check.py LEVELS_ALLOWED). Also the engines' speed on each, one thread.

    python -m benchmarks.engine.engine_pixels [--seeds 1000] [--quick]

Writes results/engine-pixels.json. The models are trained briefly (40 to 2,000 steps, fewer for
the costly ones: enough for weights past their initialisation, which is what a tolerance must
hold for; a single core trains the 64 px width-64 dcgan at about 7 images/s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import parse_args, summary, write_result
from benchmarks.models import trained

# (name, arch, resolution, channels, width, conditional, data, steps)
MODELS = [("dcgan-8px-digits", "dcgan", 8, 1, None, True, "digits", 2000),
          ("dcgan-28px", "dcgan", 28, 1, None, False, "mnist", 400),
          ("dcgan-28px-w64", "dcgan", 28, 1, 64, False, "mnist", 150),
          ("dcgan-64px-rgb", "dcgan", 64, 3, None, False, "faces", 150),
          ("dcgan-64px-rgb-w64", "dcgan", 64, 3, 64, False, "faces", 40),
          ("resnet-28px", "resnet", 28, 1, None, False, "mnist", 100),
          ("resnet-64px-rgb", "resnet", 64, 3, 16, False, "faces", 40),
          ("mlp-28px", "mlp", 28, 1, None, False, "mnist", 400)]


def rate(run, rows: int, seconds: float = 1.0) -> float:
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = max(best, rows / (time.perf_counter() - start))
    return best


def compare(folder, seeds: int) -> dict:
    from serving.engine import Engine

    reference = Engine(folder, engine="onnxruntime", threads=1, max_batch=64)
    row = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(folder, engine="openvino", precision=precision, threads=1, max_batch=64)
        diffs, logit_diffs = [], []
        for start in range(0, seeds, 64):
            batch = list(range(start, min(seeds, start + 64)))
            want, got = reference.generate(batch), engine.generate(batch)
            diffs.append(np.abs(want.astype(np.int16) - got.astype(np.int16)))
            if reference.discriminator is not None:
                classes = reference.card.num_classes
                labels = [seed % classes for seed in batch] if classes else None  # generate's own default
                logit_diffs.append(np.abs(reference.score(want, labels)[0] - engine.score(want, labels)[0]))
        diff = np.concatenate(diffs)
        row[precision] = {"max_levels": int(diff.max()), "mean_levels": round(float(diff.mean()), 4),
                          "share_of_pixels_differing": round(float((diff > 0).mean()), 4),
                          "p99_levels": int(np.percentile(diff, 99)),
                          "max_logit_diff": round(float(np.concatenate(logit_diffs).max()), 4) if logit_diffs else None,
                          "spot_check": engine.spot_check}
        speeds = {}
        for rows in (1, 16, 64):
            seeds_rows = list(range(rows))
            speeds[str(rows)] = {"onnxruntime": round(rate(lambda: reference.generate(seeds_rows), rows), 1),  # noqa: B023
                                 "openvino": round(rate(lambda: engine.generate(seeds_rows), rows), 1)}  # noqa: B023
        row[precision]["images_per_s"] = speeds
        engine.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the training (0: its default; 1 beside another training run)")
    args = parse_args(parser, seeds=64)  # and the first two models
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    chosen, seeds = (MODELS[:2] if args.quick else MODELS), args.seeds
    from serving.runtime.engines import native_bf16

    results = {}
    for name, arch, resolution, channels, width, conditional, data, steps in chosen:
        folder = trained(name, arch, resolution, channels, width, conditional, data, steps)
        results[name] = compare(folder, seeds)
        r = results[name]
        print(f"{name:20} fp32 max {r['fp32']['max_levels']} | bf16 max {r['bf16']['max_levels']} levels, mean "
              f"{r['bf16']['mean_levels']}, p99 {r['bf16']['p99_levels']}; 16 rows: ORT "
              f"{r['bf16']['images_per_s']['16']['onnxruntime']:.0f}, OpenVINO bf16 "
              f"{r['bf16']['images_per_s']['16']['openvino']:.0f} img/s", flush=True)
    worst = max(r["bf16"]["max_levels"] for r in results.values())
    path = write_result("engine-pixels",
                        {"seeds": seeds, "native_bf16": native_bf16(), "models": results,
                         "bf16_max_levels_any_model": worst,
                         "bf16_mean_levels": summary([r["bf16"]["mean_levels"] for r in results.values()])})
    print(f"bfloat16: at most {worst} levels from float32 over every model; wrote {path}")


if __name__ == "__main__":
    main()
