"""The models the benchmarks run: exported once into the work folder and reused.

- `default28`: the default recipe (width 16) at 28x28, trained briefly on MNIST-format data
  (../shared/data when present, else the built-in digits resized to 28): the HTTP comparison's
  first model; `dcgan64rgb`: a 64x64 RGB dcgan at width 64, its compute-heavier second model;
- `dcgan28`: a 28x28 dcgan (width 64) trained briefly the same way (the engine benchmarks');
- `mlp28`: the tutorial's network at 28x28; `dcgan64`: a 64x64 dcgan (width 64); `dcgan28c`: a
  conditional 28x28 dcgan with 10 classes (the sampler's --labels case). These only measure
  speed, so they are exported from freshly initialised weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks.common import WORK, quick

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _folder(name: str) -> str:
    """A model's name in the work folder: --quick models (a few steps) never stand in for real ones."""
    return f"{name}-quick" if quick() else name


def _steps(steps: int) -> int:
    return min(steps, 10) if quick() else steps


def bench_data_spec() -> str:
    return f"idx:{SHARED_DATA}" if SHARED_DATA.is_dir() else "digits"


def trained_dcgan28(steps: int = 400) -> Path:
    from export.exporter import ExportOptions, export_model
    from training.config import TrainConfig
    from training.loop import train

    name, steps = _folder("dcgan28"), _steps(steps)
    out = WORK / "models" / name
    if (out / "model.json").is_file():
        return out
    spec = bench_data_spec()
    # width 64, the canonical DCGAN width (heavier than the training default chosen for CPU
    # budgets): the model every figure in results/ was measured on.
    config = TrainConfig(data=spec, resolution=28, width=64, steps=steps, checkpoint_every=steps,
                         sample_every=steps)
    train(config, WORK / "runs" / name, progress=sys.stderr.isatty())
    export_model(WORK / "runs" / name, ExportOptions(out=out, force=True, calibration_samples=500))
    return out


def trained_default28(steps: int = 400, seed: int = 0) -> Path:
    """The default recipe (width 16) at 28 px, trained briefly: the model a user serves first.
    Another seed: another version of it (the swap benchmark's)."""
    from export.exporter import ExportOptions, export_model
    from training.config import TrainConfig
    from training.loop import train

    name, steps = _folder("default28" if seed == 0 else f"default28-seed{seed}"), _steps(steps)
    out = WORK / "models" / name
    if (out / "model.json").is_file():
        return out
    config = TrainConfig(data=bench_data_spec(), resolution=28, steps=steps, checkpoint_every=steps, sample_every=steps,
                         seed=seed)
    train(config, WORK / "runs" / name, progress=sys.stderr.isatty())
    export_model(WORK / "runs" / name, ExportOptions(out=out, force=True, calibration_samples=500))
    return out


def faces_spec() -> str:
    """The 10,000 64 px RGB faces (../shared/data/faces64.tar), extracted once into the work folder."""
    import tarfile

    folder = WORK / "faces64"
    if not folder.is_dir():
        staging = WORK / ".faces64-extracting"
        staging.mkdir(parents=True, exist_ok=True)
        with tarfile.open(SHARED_DATA / "faces64.tar") as archive:
            archive.extractall(staging, filter="data")
        staging.rename(folder)
    return f"folder:{folder / 'faces64'}"  # the archive holds one folder, faces64/


def trained(name: str, arch: str, resolution: int, channels: int, width: int | None, conditional: bool, data: str,
            steps: int) -> Path:
    """A model of this architecture and size trained `steps` steps on `data` (digits, mnist or
    faces): weights that draw something, for measurements that need them."""
    from export.exporter import ExportOptions, export_model
    from training.config import TrainConfig
    from training.loop import train

    name, steps = _folder(name), _steps(steps)
    out = WORK / "models" / name
    if (out / "model.json").is_file():
        return out
    spec = {"digits": lambda: "digits", "mnist": bench_data_spec, "faces": faces_spec}[data]()
    config = TrainConfig(data=spec, arch=arch, resolution=resolution, channels=channels, width=width,
                         conditional=conditional, steps=steps, checkpoint_every=steps, sample_every=steps)
    train(config, WORK / "runs" / name, progress=sys.stderr.isatty())
    export_model(WORK / "runs" / name, ExportOptions(out=out, force=True, calibration_samples=500))
    return out


def untrained(name: str, arch: str, resolution: int, width: int = 64, num_classes: int = 0,
              channels: int = 1) -> Path:
    import torch

    from export.exporter import ExportOptions, export_model
    from training.networks import NetworkSpec, build_discriminator, build_generator
    from training.release import ReleaseMetadata, write_release

    name = _folder(name)
    out = WORK / "models" / name
    if (out / "model.json").is_file():
        return out
    root = WORK / "runs" / name
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data.npz"
    labels = {"labels": np.arange(64) % num_classes} if num_classes else {}
    shape = (64, resolution, resolution) if channels == 1 else (64, resolution, resolution, channels)
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), **labels)
    torch.manual_seed(0)
    spec = NetworkSpec(arch, latent_dim=100, channels=channels, resolution=resolution, width=width,
                       num_classes=num_classes)
    names = [str(i) for i in range(num_classes)] if num_classes else None
    write_release(root / "release", build_generator(spec), build_discriminator(spec), spec,
                  ReleaseMetadata(dataset=f"npz:{data}", holdout=0.5, seed=0, step=0, class_names=names))
    export_model(root, ExportOptions(out=out, force=True, calibration_samples=32))
    return out


def http_models() -> dict[str, callable]:
    """The HTTP comparison's models, built on first use: the default 28 px model, and a
    compute-heavier 64 px RGB dcgan at width 64."""
    return {"default28": trained_default28, "dcgan64rgb": lambda: untrained("dcgan64rgb", "dcgan", 64, channels=3),
            "dcgan28": trained_dcgan28}


def all_models() -> dict[str, Path]:
    """The engine benchmark's models (--quick: the 28 px ones only)."""
    models = {"mlp28": untrained("mlp28", "mlp", 28), "dcgan28": trained_dcgan28(),
              "dcgan28c": untrained("dcgan28c", "dcgan", 28, num_classes=10)}
    if not quick():
        models["dcgan64"] = untrained("dcgan64", "dcgan", 64)
    return models
