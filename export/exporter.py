"""Release folder -> model folder: generator.onnx, discriminator.onnx (+ fp16 variants), model.json.

Everything is written into a temp folder beside the target and renamed into place only after
every check passed, so a failed export never leaves a half-written model folder.

    >>> summary = export_model(Path("runs/00000-dcgan-digits"), Path("models/digits"))
"""

from __future__ import annotations

import copy
import datetime
import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from serving.formats.files import replace_folder, sha256_file
from serving.formats.model_card import ModelCard
from serving.runtime import spot_check
from serving.sampling.latents import generator_feeds, label_array, latents
from training import __version__ as package_version
from training.calibration import fit_platt
from training.data import load_dataset, split_holdout
from training.errors import UserError
from training.release import CalibrationSet, Release, read_release
from training.samples import to_uint8

from .graphs import OPSET, DiscriminatorGraph, GeneratorGraph, export_graph
from .rewrites import for_inference
from .verify import ExportError, Tolerance, compare, open_runtime

G_TOLERANCE = Tolerance(absolute=1)  # uint8 levels: rounding at .5 may flip by one
D_TOLERANCE = Tolerance(absolute=1e-3, relative=1e-4)
G_FP16_TOLERANCE = Tolerance(absolute=8)  # float16 keeps ~3 decimal digits: a few levels at most
D_FP16_TOLERANCE = Tolerance(absolute=5e-2, relative=2e-2)
PARITY_SEED = 1234


@dataclass
class ExportOptions:
    out: Path
    name: str | None = None  # default: the output folder's name
    fp16: bool = False
    force: bool = False
    calibration_data: str | None = None  # default: the release's own held-out split
    calibration_samples: int = 2000
    bentoml_name: str | None = None


def export_model(source: Path, options: ExportOptions) -> dict:
    """Export, verify and write the model folder; returns model.json's content."""
    release = read_release(source)
    out = Path(options.out)
    if out.exists() and not options.force:
        raise ExportError(f"--out {out} already exists; pass --force to replace it")
    name = options.name or out.name
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise ExportError(f"--name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        card = _export_into(staging, release, name, options)
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card = card.to_json()
    if options.bentoml_name:
        card["bentoml_tag"] = save_to_bentoml(out, options.bentoml_name, card)
    return card


def _export_into(folder: Path, release: Release, name: str, options: ExportOptions) -> ModelCard:
    spec = release.spec
    generator, discriminator = release.build_generator(), release.build_discriminator()
    gen_graph, disc_graph = GeneratorGraph(generator), DiscriminatorGraph(discriminator)
    conditional = spec.num_classes > 0

    def gen_inputs(batch: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(PARITY_SEED + batch)
        feeds = {"z": rng.standard_normal((batch, spec.latent_dim), dtype=np.float32)}
        if conditional:
            feeds["labels"] = (np.arange(batch) % spec.num_classes).astype(np.int64)
        return feeds

    def disc_inputs(batch: int) -> dict[str, np.ndarray]:
        feeds = gen_inputs(batch)
        with torch.no_grad():
            images = gen_graph(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        images[batch // 2:] = np.random.default_rng(batch).integers(0, 256, images[batch // 2:].shape,
                                                                      dtype=np.uint8)  # half noise
        return {"images": images, **({"labels": feeds["labels"]} if conditional else {})}

    def blend_inputs(batch: int) -> dict[str, np.ndarray]:
        """Class blends from one-hot (the plain graph's images) to halfway between two classes."""
        feeds = gen_inputs(batch)
        weights = np.eye(spec.num_classes, dtype=np.float32)[feeds.pop("labels")]
        weights[batch // 2:] = (weights[batch // 2:] + np.roll(weights[batch // 2:], 1, axis=1)) / 2
        return {"z": feeds["z"], "label_weights": weights}

    # The float32 G is exported with CPU-friendly rewrites (rewrites.py) and held to the plain G.
    # The float16 G, for GPUs, keeps the plain layers: there the rewrite would only add kernels.
    fast_gen_graph = GeneratorGraph(for_inference(generator))
    graphs = {"generator": (fast_gen_graph, gen_inputs, "images", G_TOLERANCE, gen_graph),
              "discriminator": (disc_graph, disc_inputs, "logits", D_TOLERANCE)}
    if conditional:  # a second G that takes a blend of classes: /interpolate between labels
        graphs["generator_blend"] = (fast_gen_graph, blend_inputs, "images", G_TOLERANCE, gen_graph)
    if options.fp16:
        graphs["generator_fp16"] = (GeneratorGraph(copy.deepcopy(generator), torch.float16), gen_inputs,
                                    "images", G_FP16_TOLERANCE, gen_graph)
        graphs["discriminator_fp16"] = (DiscriminatorGraph(copy.deepcopy(discriminator), torch.float16),
                                        disc_inputs, "logits", D_FP16_TOLERANCE, disc_graph)
    entries, parity = {}, {}
    for key, (graph, make_inputs, output, tolerance, *reference) in graphs.items():
        file_name = key.replace("_fp16", ".fp16") + ".onnx"
        export_graph(graph, _to_torch(make_inputs(2)), output, folder / file_name)
        # Rewritten and fp16 graphs are held to the plain float32 PyTorch graph: that is the model.
        parity[key] = compare(reference[0] if reference else graph, folder / file_name, make_inputs,
                              tolerance, f"{file_name}")
        entries[key] = {"file": file_name, "inputs": _io_names(conditional, key), "output": output,
                        "precision": "float16" if key.endswith("fp16") else "float32"}
    calibration = calibrate(folder, release, options, conditional)
    write_spot_check(folder, spec, conditional)
    files = {p.name: sha256_file(p) for p in sorted([*folder.glob("*.onnx"), folder / spot_check.FILE])}
    card = ModelCard(
        name=name, version=f"s{release.config.get('step', 0)}-{files['generator.onnx'][:8]}", architecture=spec.arch,
        latent_dim=spec.latent_dim, num_classes=spec.num_classes,
        class_names=release.config.get("class_names") if conditional else None,
        height=spec.resolution, width=spec.resolution, channels=spec.channels, graphs=entries, files=files,
        source={"release": str(release.path), "step": release.config.get("step"),
                "dataset": release.config.get("dataset"), "sha256": release.config.get("files")},
        calibration=calibration, parity=parity,
        export={"exporter": "torch.onnx.export(dynamo=True)", "opset": OPSET, "torch": torch.__version__,
                "ganserve": package_version,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    card.write(folder)
    return card


def calibration_images(release: Release, options: ExportOptions, conditional: bool) -> tuple[CalibrationSet, str]:
    """The real images D is calibrated on, and where they came from: --calibration-data when
    given, else the held-out images saved in the release. A release made before releases
    carried them is calibrated on its data set's held-out split, loaded again."""
    spec, config = release.spec, release.config
    saved = None if options.calibration_data else release.calibration()
    if saved is not None:
        return saved, config.get("dataset")
    spec_text = options.calibration_data or config.get("dataset")
    try:
        data = load_dataset(spec_text, config.get("dataset_resolution"), config.get("dataset_channels"))
    except UserError as error:
        raise ExportError(f"D calibration needs real images and the data could not be loaded ({error}); "
                          "pass --calibration-data SPEC") from None
    if data.shape != (spec.channels, spec.resolution, spec.resolution):
        raise ExportError(f"--calibration-data {spec_text!r} has images of shape {data.shape}, the model "
                          f"expects {(spec.channels, spec.resolution, spec.resolution)}")
    split = "calibration data"
    if not options.calibration_data:
        _, held_out = split_holdout(data, config.get("holdout", 0.0), config.get("seed", 0))
        data, split = (held_out, "held-out split") if len(held_out) else (data, "training data (no holdout)")
    count = min(len(data), options.calibration_samples)
    labels = data.labels[:count].numpy() if conditional else None
    return CalibrationSet(to_uint8(data.batch(np.arange(count))), labels, split), spec_text


def calibrate(folder: Path, release: Release, options: ExportOptions, conditional: bool) -> dict:
    """Score held-out real images and generated ones with the exported graphs; fit Platt."""
    spec = release.spec
    real_set, source = calibration_images(release, options, conditional)
    count = min(len(real_set.images), options.calibration_samples)
    real = real_set.images[:count]
    real_labels = real_set.labels[:count] if conditional else None
    split = real_set.split
    rng = np.random.default_rng(PARITY_SEED)
    run_g, _ = open_runtime(folder / "generator.onnx")
    run_d, _ = open_runtime(folder / "discriminator.onnx")
    fake_labels = rng.integers(0, spec.num_classes, count) if conditional else None
    z = rng.standard_normal((count, spec.latent_dim), dtype=np.float32)
    fake = _batched(run_g, {"z": z, **({"labels": fake_labels} if conditional else {})})
    real_logits = _batched(run_d, {"images": real, **({"labels": real_labels} if conditional else {})})
    fake_logits = _batched(run_d, {"images": fake, **({"labels": fake_labels} if conditional else {})})
    return {**fit_platt(real_logits, fake_logits), "split": split, "data": source}


def write_spot_check(folder: Path, spec, conditional: bool) -> None:
    """What this machine's ONNX Runtime makes of two seeds, as the server makes them: the
    server compares its own runtime's output with it at start-up (serving/runtime/spot_check.py)."""
    seeds = list(spot_check.SEEDS)
    labels = label_array(seeds, None, spec.num_classes) if conditional else None
    run_g, _ = open_runtime(folder / "generator.onnx")
    run_d, _ = open_runtime(folder / "discriminator.onnx")
    saved = spot_check.reference(run_g, run_d, generator_feeds(latents(seeds, spec.latent_dim), labels), labels)
    buffer = io.BytesIO()
    np.savez(buffer, **saved)
    (folder / spot_check.FILE).write_bytes(buffer.getvalue())


def _batched(run, feeds: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    count = len(next(iter(feeds.values())))
    return np.concatenate([run({k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, count, batch)])


def _to_torch(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in feeds.items()}


def _io_names(conditional: bool, key: str) -> list[str]:
    if key == "generator_blend":
        return ["z", "label_weights"]
    first = "z" if key.startswith("generator") else "images"
    return [first, "labels"] if conditional else [first]


def save_to_bentoml(folder: Path, name: str, card: dict) -> str:
    """Put the model folder into the local BentoML model store; returns the tag."""
    import bentoml

    metadata = {k: card[k] for k in ("name", "version", "architecture", "latent_dim", "num_classes",
                                     "height", "width", "channels")}
    metadata["auroc"] = card["calibration"]["auroc"]
    try:
        with bentoml.models.create(name, metadata=metadata, labels={"framework": "onnx",
                                                                    "package": "ganserve"}) as model:
            for file in folder.iterdir():
                shutil.copy2(file, Path(model.path) / file.name)
    except ValueError as error:
        raise ExportError(f"--bentoml {name!r}: {error}") from None
    return str(model.tag)
