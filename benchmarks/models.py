"""The models the benchmarks run: exported once into the work folder and reused.

- `dcgan28`: a 28x28 dcgan (width 64) trained briefly on MNIST-format data (../shared/data when present,
  else the built-in digits resized to 28), the model of the HTTP comparison;
- `mlp28`: the tutorial's network at 28x28; `dcgan64`: a 64x64 dcgan (width 64). These two
  only measure speed, so they are exported from freshly initialised weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common import WORK

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_data_spec() -> str:
    return f"idx:{SHARED_DATA}" if SHARED_DATA.is_dir() else "digits"


def trained_dcgan28(steps: int = 400) -> Path:
    from export.exporter import ExportOptions, export_model
    from training.config import TrainConfig
    from training.loop import train

    out = WORK / "models" / "dcgan28"
    if (out / "model.json").is_file():
        return out
    spec = bench_data_spec()
    # width 64, the canonical DCGAN width (heavier than the training default chosen for CPU
    # budgets): the model every figure in results/ was measured on.
    config = TrainConfig(data=spec, resolution=28, width=64, steps=steps, checkpoint_every=steps,
                         sample_every=steps)
    train(config, WORK / "runs" / "dcgan28", progress=sys.stderr.isatty())
    export_model(WORK / "runs" / "dcgan28", ExportOptions(out=out, force=True, calibration_samples=500))
    return out


def untrained(name: str, arch: str, resolution: int, width: int = 64) -> Path:
    import torch

    from export.exporter import ExportOptions, export_model
    from training.networks import NetworkSpec, build_discriminator, build_generator
    from training.release import write_release

    out = WORK / "models" / name
    if (out / "model.json").is_file():
        return out
    root = WORK / "runs" / name
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (64, resolution, resolution), dtype=np.uint8))
    torch.manual_seed(0)
    spec = NetworkSpec(arch, latent_dim=100, channels=1, resolution=resolution, width=width)
    write_release(root / "release", build_generator(spec), build_discriminator(spec), spec,
                  {"dataset": f"npz:{data}", "holdout": 0.5, "seed": 0, "step": 0, "class_names": None})
    export_model(root, ExportOptions(out=out, force=True, calibration_samples=32))
    return out


def all_models() -> dict[str, Path]:
    return {"mlp28": untrained("mlp28", "mlp", 28), "dcgan28": trained_dcgan28(),
            "dcgan64": untrained("dcgan64", "dcgan", 64)}
