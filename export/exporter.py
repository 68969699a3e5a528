"""Release folder -> model folder: generator.onnx, discriminator.onnx (+ fp16 variants), model.json.

Everything is written into a temp folder beside the target and renamed into place only after
every check passed, so a failed export never leaves a half-written model folder.

    >>> summary = export_model(Path("runs/00000-dcgan-digits"), Path("models/digits"))
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from serving import __version__ as package_version
from serving.formats import drift, spot_check, train_index
from serving.formats.files import replace_folder, sha256_file
from serving.formats.model_card import ModelCard
from serving.sampling.latents import generator_feeds, label_array, latents
from training.calibration import fit_platt
from training.data import load_dataset, split_holdout
from training.errors import UserError
from training.release import CalibrationSet, Release, read_release, training_images
from training.samples import to_uint8

from .graphs import OPSET, DiscriminatorGraph, EncoderGraph, GeneratorGraph, export_graph
from .rewrites import for_inference
from .verify import ExportError, Tolerance, compare, open_runtime

G_TOLERANCE = Tolerance(absolute=1)  # uint8 levels: rounding at .5 may flip by one
D_TOLERANCE = Tolerance(absolute=1e-3, relative=1e-4)
G_FP16_TOLERANCE = Tolerance(absolute=8)  # float16 keeps ~3 decimal digits: a few levels at most
D_FP16_TOLERANCE = Tolerance(absolute=5e-2, relative=2e-2)
E_TOLERANCE = Tolerance(absolute=1e-3, relative=1e-4)  # latents; the refinement searches around them anyway
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
    train_index: bool = True  # index the training images' thumbnails for memorisation checks
    index_data: str | None = None  # the training images (default: the run's data without its held-out split)


def export_model(source: Path, options: ExportOptions) -> dict:
    """Export, verify and write the model folder; returns model.json's content."""
    release = read_release(source)
    out = Path(options.out)
    name = checked_name(options.name or out.name)
    with staged_model_folder(out, options.force) as staging:
        card = _export_into(staging, release, name, options)
    card = card.to_json()
    if options.bentoml_name:
        card["bentoml_tag"] = save_to_bentoml(out, options.bentoml_name, card)
    return card


def _export_into(folder: Path, release: Release, name: str, options: ExportOptions) -> ModelCard:
    spec = release.spec
    generator, discriminator = release.build_generator(), release.build_discriminator()
    gen_graph, disc_graph = GeneratorGraph(generator), DiscriminatorGraph(discriminator)
    conditional = spec.num_classes > 0
    gen_inputs = generator_inputs(spec.latent_dim, spec.num_classes)
    disc_inputs = discriminator_inputs(gen_graph, gen_inputs)

    def blend_inputs(batch: int) -> dict[str, np.ndarray]:
        """Class blends from one-hot (the plain graph's images) to halfway between two classes."""
        feeds = gen_inputs(batch)
        weights = np.eye(spec.num_classes, dtype=np.float32)[feeds.pop("labels")]
        weights[batch // 2:] = (weights[batch // 2:] + np.roll(weights[batch // 2:], 1, axis=1)) / 2
        return {"z": feeds["z"], "label_weights": weights}

    # The float32 G is exported with CPU-friendly rewrites (rewrites.py) and held to the plain G.
    # The float16 G, for GPUs, keeps the plain layers: there the rewrite would only add kernels.
    fast_gen_graph = GeneratorGraph(for_inference(generator))
    # Rewritten and fp16 graphs are held to the plain float32 PyTorch graph: that is the model.
    graphs = {"generator": GraphToExport(fast_gen_graph, gen_inputs, "images", G_TOLERANCE, gen_graph),
              "discriminator": GraphToExport(disc_graph, disc_inputs, "logits", D_TOLERANCE, disc_graph)}
    if conditional:  # a second G that takes a blend of classes: /interpolate between labels
        graphs["generator_blend"] = GraphToExport(fast_gen_graph, blend_inputs, "images", G_TOLERANCE, gen_graph)
    encoder = release_encoder(release)
    if encoder is not None:  # E for projection (ganserve train-encoder): G's images in, their latents out
        encoder_graph = EncoderGraph(encoder)
        graphs["encoder"] = GraphToExport(encoder_graph, encoder_inputs(disc_inputs), "latent", E_TOLERANCE,
                                          encoder_graph)
    if options.fp16:
        graphs["generator_fp16"] = GraphToExport(GeneratorGraph(copy.deepcopy(generator), torch.float16),
                                                 gen_inputs, "images", G_FP16_TOLERANCE, gen_graph)
        graphs["discriminator_fp16"] = GraphToExport(DiscriminatorGraph(copy.deepcopy(discriminator), torch.float16),
                                                     disc_inputs, "logits", D_FP16_TOLERANCE, disc_graph)
    entries, parity = {}, {}
    for key, graph in graphs.items():
        entries[key], parity[key] = export_verified(folder, key, graph, conditional)
    calibration = calibrate(folder, release, options, conditional)
    write_spot_check(folder, spec, conditional)
    index = write_train_index(folder, release, options) if options.train_index else None
    files = model_files(folder)
    card = ModelCard(
        name=name, version=f"s{release.metadata.step}-{files['generator.onnx'][:8]}", architecture=spec.arch,
        latent_dim=spec.latent_dim, num_classes=spec.num_classes,
        class_names=release.metadata.class_names if conditional else None,
        height=spec.resolution, width=spec.resolution, channels=spec.channels, graphs=entries, files=files,
        source={"release": str(release.path), "step": release.metadata.step,
                "dataset": release.metadata.dataset, "sha256": release.files,
                **({"encoder": _encoder_record(release.encoder)} if "encoder" in entries else {})},
        calibration=calibration, parity=parity, train_index=index,
        export={"exporter": "torch.onnx.export(dynamo=True)", "opset": OPSET, "torch": torch.__version__,
                "ganserve": package_version,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    card.write(folder)
    return card


def _encoder_record(encoder: dict) -> dict:
    """What model.json keeps of the release's E: its width, how it was trained, and its figures."""
    return {k: encoder[k] for k in ("width", "options", "figures") if k in encoder}


def write_train_index(folder: Path, release: Release, options: ExportOptions) -> dict | None:
    """train_index.npz: the thumbnails of the images G was trained on (serving/formats/train_index.py),
    for `ganserve audit` and max_train_similarity; None (and a note) when they cannot be loaded."""
    spec = release.spec
    try:
        data, source = training_images(release, options.index_data, "--index-data")
    except UserError as error:
        if options.index_data:  # asked for by name: its failure is the user's to fix
            raise ExportError(str(error)) from None
        print(f"note: no training-image index ({error}); memorisation checks will be off for this model. Pass "
              "--index-data SPEC where the training images are, or --no-train-index")
        return None
    count = min(len(data), train_index.MAX_IMAGES)
    batches = (to_uint8(data.batch(np.arange(i, min(i + 4096, count)))) for i in range(0, count, 4096))
    index = train_index.TrainIndex.of_batches(batches, total=len(data))
    (folder / train_index.FILE).write_bytes(index.to_bytes())
    record = {"file": train_index.FILE, "count": count, "of": len(data), "data": source,
              "split": "given" if options.index_data else "training split", "space": "thumbnails",
              "side": train_index.thumbnail_side(spec.resolution)}
    held_out = release.calibration()
    if held_out is not None and held_out.split == "held-out split" and not options.index_data:
        # how close new images of the same kind come to the training set: what a near-copy must beat
        similarity, _ = index.nearest(held_out.images)
        record["held_out"] = {"count": len(similarity), **{f"p{q}": round(float(np.percentile(similarity, q)), 4)
                                                           for q in (50, 99)}, "max": round(float(similarity.max()), 4)}
    return record


def generator_inputs(latent_dim: int, num_classes: int):
    """batch -> G's parity feeds: fixed latents, and labels cycling through the classes."""
    def make(batch: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(PARITY_SEED + batch)
        feeds = {"z": rng.standard_normal((batch, latent_dim), dtype=np.float32)}
        if num_classes:
            feeds["labels"] = (np.arange(batch) % num_classes).astype(np.int64)
        return feeds

    return make


def discriminator_inputs(gen_graph, gen_inputs):
    """batch -> D's parity feeds: half G's images, half noise."""
    def make(batch: int) -> dict[str, np.ndarray]:
        feeds = gen_inputs(batch)
        with torch.no_grad():
            images = gen_graph(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        images[batch // 2:] = np.random.default_rng(batch).integers(0, 256, images[batch // 2:].shape,
                                                                      dtype=np.uint8)  # half noise
        return {"images": images, **({"labels": feeds["labels"]} if "labels" in feeds else {})}

    return make


def encoder_inputs(disc_inputs):
    """batch -> E's parity feeds: D's (half G's images, half noise), without labels."""
    def make(batch: int) -> dict[str, np.ndarray]:
        return {"images": disc_inputs(batch)["images"]}

    return make


def release_encoder(release: Release) -> torch.nn.Module | None:
    """The release's E, if it has one; refused when it was trained for another G."""
    if release.encoder is None:
        return None
    encoder = release.build_encoder()
    if encoder is None:
        raise ExportError(f"{release.path}: encoder.safetensors was trained for another generator; train it again "
                          f"with ganserve train-encoder {release.path}")
    return encoder


@dataclass(frozen=True)
class GraphToExport:
    """One ONNX file of the model folder: the module exported, how to make its inputs, its
    output's name, and the PyTorch graph and tolerance its outputs are held to."""

    module: torch.nn.Module
    make_inputs: Callable[[int], dict[str, np.ndarray]]
    output: str
    tolerance: Tolerance
    reference: torch.nn.Module


def export_verified(folder: Path, key: str, graph: GraphToExport, conditional: bool) -> tuple[dict, dict]:
    """Export `graph` as KEY.onnx and hold it to its reference (PyTorch); returns its model.json
    entry and parity record."""
    file_name = key.replace("_fp16", ".fp16") + ".onnx"
    export_graph(graph.module, _to_torch(graph.make_inputs(2)), graph.output, folder / file_name)
    parity = compare(graph.reference, folder / file_name, graph.make_inputs, graph.tolerance, file_name)
    entry = {"file": file_name, "inputs": _io_names(conditional, key), "output": graph.output,
             "precision": "float16" if key.endswith("fp16") else "float32"}
    return entry, parity


def calibration_images(release: Release, options: ExportOptions, conditional: bool) -> tuple[CalibrationSet, str]:
    """The real images D is calibrated on, and where they came from: --calibration-data when
    given, else the held-out images saved in the release. A release made before releases
    carried them is calibrated on its data set's held-out split, loaded again."""
    spec, metadata = release.spec, release.metadata
    saved = None if options.calibration_data else release.calibration()
    if saved is not None:
        return saved, metadata.dataset
    spec_text = options.calibration_data or metadata.dataset
    try:
        data = load_dataset(spec_text, metadata.dataset_resolution, metadata.dataset_channels)
    except UserError as error:
        raise ExportError(f"D calibration needs real images and the data could not be loaded ({error}); "
                          "pass --calibration-data SPEC") from None
    if data.shape != (spec.channels, spec.resolution, spec.resolution):
        raise ExportError(f"--calibration-data {spec_text!r} has images of shape {data.shape}, the model "
                          f"expects {(spec.channels, spec.resolution, spec.resolution)}")
    split = "calibration data"
    if not options.calibration_data:
        _, held_out = split_holdout(data, metadata.holdout, metadata.seed)
        data, split = (held_out, "held-out split") if len(held_out) else (data, "training data (no holdout)")
    count = min(len(data), options.calibration_samples)
    labels = data.labels[:count].numpy() if conditional else None
    return CalibrationSet(to_uint8(data.batch(np.arange(count))), labels, split), spec_text


def calibrate(folder: Path, release: Release, options: ExportOptions, conditional: bool) -> dict:
    """Score held-out real images and generated ones with the exported graphs; fit Platt."""
    real_set, source = calibration_images(release, options, conditional)
    count = min(len(real_set.images), options.calibration_samples)
    real_labels = real_set.labels[:count] if conditional else None
    fit = calibrate_graphs(folder, real_set.images[:count], real_labels, release.spec.latent_dim,
                           release.spec.num_classes)
    return {**fit, "split": real_set.split, "data": source}


def calibrate_graphs(folder: Path, real: np.ndarray, real_labels: np.ndarray | None, latent_dim: int,
                     num_classes: int) -> dict:
    """D's logits on `real` and on as many of the folder's G's images, fitted by fit_platt, with
    the deciles of each set's logits that the server's drift windows compare with (serving/formats/drift.py)."""
    count, conditional = len(real), num_classes > 0
    rng = np.random.default_rng(PARITY_SEED)
    run_g, _ = open_runtime(folder / "generator.onnx")
    run_d, _ = open_runtime(folder / "discriminator.onnx")
    fake_labels = rng.integers(0, num_classes, count) if conditional else None
    z = rng.standard_normal((count, latent_dim), dtype=np.float32)
    fake = _batched(run_g, {"z": z, **({"labels": fake_labels} if conditional else {})})
    real_logits = _batched(run_d, {"images": real, **({"labels": real_labels} if conditional else {})})
    fake_logits = _batched(run_d, {"images": fake, **({"labels": fake_labels} if conditional else {})})
    return {**fit_platt(real_logits, fake_logits),
            "drift": {"real": drift.reference(real_logits), "generated": drift.reference(fake_logits)}}


def generated_logits(folder: Path, count: int, latent_dim: int) -> np.ndarray:
    """D's logits on `count` of the folder's G's images (an unconditional model)."""
    rng = np.random.default_rng(PARITY_SEED)
    run_g, _ = open_runtime(folder / "generator.onnx")
    run_d, _ = open_runtime(folder / "discriminator.onnx")
    return _batched(run_d, {"images": _batched(run_g, {"z": rng.standard_normal((count, latent_dim),
                                                                                   dtype=np.float32)})})


def write_spot_check(folder: Path, spec, conditional: bool, with_discriminator: bool = True) -> None:
    """What this machine's ONNX Runtime makes of two seeds, as the server makes them: the
    server compares its own runtime's output with it at start-up (serving/formats/spot_check.py).
    `spec`: anything with latent_dim and num_classes."""
    seeds = list(spot_check.SEEDS)
    labels = label_array(seeds, None, spec.num_classes) if conditional else None
    run_g, _ = open_runtime(folder / "generator.onnx")
    run_d = open_runtime(folder / "discriminator.onnx")[0] if with_discriminator else None
    saved = spot_check.reference(run_g, run_d, generator_feeds(latents(seeds, spec.latent_dim), labels), labels)
    buffer = io.BytesIO()
    np.savez(buffer, **saved)
    (folder / spot_check.FILE).write_bytes(buffer.getvalue())


def checked_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise ExportError(f"--name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


@contextlib.contextmanager
def staged_model_folder(out: Path, force: bool):
    """A temp folder beside `out` to write the model folder into; renamed over `out` only if the
    block finishes (every check passed), so a failed export never leaves half a folder."""
    if out.exists() and not force:
        raise ExportError(f"--out {out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def model_files(folder: Path) -> dict[str, str]:
    """sha256 of every file a model folder serves: its graphs, its spot check and its training index."""
    extra = [folder / train_index.FILE] if (folder / train_index.FILE).is_file() else []
    return {p.name: sha256_file(p) for p in sorted([*folder.glob("*.onnx"), folder / spot_check.FILE, *extra])}


def _batched(run, feeds: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    count = len(next(iter(feeds.values())))
    return np.concatenate([run({k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, count, batch)])


def _to_torch(feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in feeds.items()}


def _io_names(conditional: bool, key: str) -> list[str]:
    if key == "generator_blend":
        return ["z", "label_weights"]
    if key == "encoder":
        return ["images"]
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
