"""`ganserve import`: a GAN trained elsewhere into a model folder that serves, samples and
scores like an exported one, held to the same checks.

Two sources:
- a PyTorch state dict of the DCGAN tutorial's networks (tutorial_dcgan.py), loaded with
  `weights_only=True`, exported to ONNX and compared with PyTorch at several batch sizes as
  `ganserve export` does; its discriminator too, when given, calibrated on --data's real
  images (or, without them, kept as the network's own sigmoid, flagged uncalibrated);
- an ONNX generator written by other code, wrapped into the folder's contract
  (onnx_wrap.py) and checked: deterministic, the same image alone or in a batch, finite and
  in range for IMPORT_CHECK_SEEDS seeds, and the wrapped pixels equal to the raw output's.
A file that only unpickling could read (a StyleGAN or R3GAN .pkl, a whole module saved with
torch.save) is refused: unpickling runs whatever code the file names.

    >>> summary = import_model(Path("netG.pth"), ImportOptions(out=Path("models/faces")))
"""

from __future__ import annotations

import datetime
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from serving import __version__ as package_version
from serving.formats.files import sha256_file
from serving.formats.model_card import GENERATOR_ONLY_FORMAT, WITH_DISCRIMINATOR_FORMAT, ModelCard
from serving.sampling.latents import label_array, latents
from training.calibration import reference_scores
from training.data import load_dataset
from training.errors import UserError
from training.samples import to_uint8

from . import onnx_wrap, tutorial_dcgan
from .exporter import (
    D_TOLERANCE,
    G_TOLERANCE,
    GraphToExport,
    calibrate_graphs,
    checked_name,
    discriminator_inputs,
    export_verified,
    generated_logits,
    generator_inputs,
    model_files,
    staged_model_folder,
    write_spot_check,
)
from .graphs import OPSET, DiscriminatorGraph, GeneratorGraph
from .verify import PARITY_BATCH_SIZES, ExportError, open_runtime

IMPORT_CHECK_SEEDS = 1000  # an ONNX generator must give finite, in-range images for this many
OUT_OF_RANGE_SHARE = 0.05  # of raw values beyond the range by more than 0.1: the range is likely wrong
TORCH_ONLY = ("discriminator", "key", "discriminator_key", "nz", "ngf", "ndf", "nc", "image_size", "data")
ONNX_ONLY = ("latent_input", "label_input", "num_classes", "layout", "range")


@dataclass
class ImportOptions:
    out: Path
    name: str | None = None  # default: the output folder's name
    force: bool = False
    # a state dict of the DCGAN tutorial's networks
    tutorial: tutorial_dcgan.TutorialSpec = field(default_factory=tutorial_dcgan.TutorialSpec)
    discriminator: Path | None = None  # its D's state dict (may be the same file as G's)
    key: str | None = None  # the entry of G's file that holds G's state dict
    discriminator_key: str | None = None
    data: str | None = None  # real images to calibrate the imported D on (a --data spec)
    calibration_samples: int = 2000
    # an ONNX generator: what it takes and gives, where detection is not enough
    latent_input: str | None = None
    label_input: str | None = None
    num_classes: int = 0
    layout: str | None = None  # nchw | nhwc
    range: str | None = None  # tanh | unit
    given: tuple[str, ...] = ()  # the options the user set, to refuse those that do not apply


def import_model(source: Path, options: ImportOptions) -> tuple[dict, list[str]]:
    """Import `source`; returns model.json's content and the lines that say what was found."""
    if not source.is_file():
        raise ExportError(f"GENERATOR: {source} is not a file")
    kind = file_kind(source)
    misplaced = [name for name in options.given if name in (ONNX_ONLY if kind == "torch" else TORCH_ONLY)]
    if misplaced:
        flags = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        raise ExportError(f"{flags}: {'apply' if len(misplaced) > 1 else 'applies'} to "
                          f"{'ONNX generators' if kind == 'torch' else 'PyTorch state dicts'}; {source} is "
                          f"{'a PyTorch file' if kind == 'torch' else 'an ONNX graph'}")
    out = Path(options.out)
    name = checked_name(options.name or out.name)
    with staged_model_folder(out, options.force) as staging:
        if kind == "torch":
            card, notes = _from_state_dict(staging, source, name, options)
        else:
            card, notes = _from_onnx(staging, source, name, options)
    return card.to_json(), notes


def file_kind(path: Path) -> str:
    """'torch' (a torch.save zip, or a pickle, refused later if it holds code) or 'onnx'."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return "torch"
    return "onnx"


# --- PyTorch state dicts --------------------------------------------------------------------------

def _from_state_dict(folder: Path, source: Path, name: str, options: ImportOptions) -> tuple[ModelCard, list[str]]:
    spec = options.tutorial
    spec.check()
    notes = []
    generator = tutorial_dcgan.build_generator(spec)
    state, note = read_state_dict(source, options.key, generator, "G")
    tutorial_dcgan.load_weights(generator, state, str(source))
    notes += [note] if note else []
    discriminator = None
    if options.discriminator is not None:
        discriminator = tutorial_dcgan.build_discriminator(spec)
        state, note = read_state_dict(options.discriminator, options.discriminator_key, discriminator, "D")
        tutorial_dcgan.load_weights(discriminator, state, str(options.discriminator))
        notes += [note] if note else []
    gen_graph = GeneratorGraph(generator)
    gen_inputs = generator_inputs(spec.nz, 0)
    entries, parity = {}, {}
    entries["generator"], parity["generator"] = export_verified(
        folder, "generator", GraphToExport(gen_graph, gen_inputs, "images", G_TOLERANCE, gen_graph), False)
    calibration = None
    if discriminator is not None:
        disc_graph = DiscriminatorGraph(discriminator)
        disc_inputs = discriminator_inputs(gen_graph, gen_inputs)
        entries["discriminator"], parity["discriminator"] = export_verified(
            folder, "discriminator", GraphToExport(disc_graph, disc_inputs, "logits", D_TOLERANCE, disc_graph), False)
        calibration = _calibrate(folder, spec, options)
        notes.append(_calibration_note(calibration))
    write_spot_check(folder, _Sizes(spec.nz, 0), False, with_discriminator=discriminator is not None)
    files = model_files(folder)
    card = ModelCard(
        name=name, version=f"imported-{files['generator.onnx'][:8]}", architecture="dcgan-tutorial",
        latent_dim=spec.nz, num_classes=0, class_names=None, height=spec.image_size, width=spec.image_size,
        channels=spec.nc, graphs=entries, files=files, calibration=calibration, parity=parity,
        source={"imported_from": "torch state dict", "file": source.name, "sha256": sha256_file(source),
                "key": options.key, "tutorial": vars(spec),
                "discriminator": None if options.discriminator is None else {
                    "file": options.discriminator.name, "sha256": sha256_file(options.discriminator),
                    "key": options.discriminator_key}},
        export=_export_record(f"torch.onnx.export(dynamo=True), torch {torch.__version__}", OPSET),
        format_version=WITH_DISCRIMINATOR_FORMAT if discriminator is not None else GENERATOR_ONLY_FORMAT)
    card.write(folder)
    return card, notes


def read_state_dict(path: Path, key: str | None, net: torch.nn.Module, which: str) -> tuple[dict, str | None]:
    """The state dict in `path` for `net`: the file itself, its entry `key`, or the one entry
    that fits `net` (said in the returned note)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ExportError(f"{path}: it holds Python objects, not only tensors ({_unpickler_reason(error)}); ganserve "
                          "never unpickles code (StyleGAN and R3GAN .pkl files carry theirs): save the network's "
                          "state_dict() with torch.save, or export it with torch.onnx.export, and import that"
                          ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ExportError(f"{path}: not a file torch.save wrote ({error})") from None
    if not isinstance(loaded, dict):
        raise ExportError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    if key is not None:
        if key not in loaded:
            raise ExportError(f"--{'key' if which == 'G' else 'discriminator-key'} {key!r}: {path} has no such "
                              f"entry (it has {', '.join(map(repr, loaded))})")
        return _tensors(loaded[key], f"{path}[{key!r}]"), None
    if all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return loaded, None
    entries = {k: v for k, v in loaded.items() if isinstance(v, dict) and v and
               all(isinstance(t, torch.Tensor) for t in v.values())}
    fitting = [k for k, v in entries.items() if tutorial_dcgan.fits(net, v)]
    flag = "--key" if which == "G" else "--discriminator-key"
    if len(fitting) == 1:
        return entries[fitting[0]], f"{which}: took entry {fitting[0]!r} of {path.name}, the one that fits"
    if len(entries) == 1:  # one candidate that does not fit: loading it names the layers that differ
        only = next(iter(entries))
        return entries[only], f"{which}: took entry {only!r} of {path.name}"
    raise ExportError(f"{path}: {'none' if not fitting else 'several'} of its entries "
                      f"({', '.join(map(repr, entries)) or 'none hold tensors'}) fit {which} with these options; name "
                      f"one with {flag}")


def _tensors(value, where: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(t, torch.Tensor) for t in value.values()):
        raise ExportError(f"{where}: not a state dict (a dict of tensors)")
    return value


def _unpickler_reason(error: Exception) -> str:
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", str(error))
    return found.group(1).strip() if found else "a type that weights_only loading refuses"


@dataclass(frozen=True)
class _Sizes:
    latent_dim: int
    num_classes: int


def _calibrate(folder: Path, spec: tutorial_dcgan.TutorialSpec, options: ImportOptions) -> dict:
    """Platt on --data's real images, as export calibrates; without them, the network's own
    sigmoid, with the reference scores of its G's images (what the swap gate needs)."""
    count = options.calibration_samples
    if options.data is None:
        logits = generated_logits(folder, count, spec.nz)
        return {"method": "identity: the discriminator's own sigmoid", "a": 1.0, "b": 0.0, "auroc": None,
                "num_real": 0, "num_fake": int(len(logits)), "degenerate": True,
                "warnings": ["not calibrated: import with --data SPEC (real images like the training data) to fit "
                             "p_real"],
                "reference": {"generated": reference_scores(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))},
                "split": None, "data": None}
    try:
        data = load_dataset(options.data, spec.image_size, spec.nc)
    except UserError as error:
        raise ExportError(f"--data: {error}") from None
    real = to_uint8(data.batch(np.arange(min(len(data), count))))
    return {**calibrate_graphs(folder, real, None, spec.nz, 0), "split": "calibration data", "data": options.data}


def _calibration_note(calibration: dict) -> str:
    if calibration["auroc"] is None:
        return "D: kept as the network's own sigmoid (not calibrated; pass --data to fit p_real on real images)"
    return (f"D: calibrated on {calibration['num_real']} real and {calibration['num_fake']} generated images, AUROC "
            f"{calibration['auroc']:.3f}")


# --- ONNX generators ------------------------------------------------------------------------------

def _from_onnx(folder: Path, source: Path, name: str, options: ImportOptions) -> tuple[ModelCard, list[str]]:
    try:
        model = onnx.load(str(source))
        onnx.checker.check_model(model)
    except Exception as error:  # protobuf and checker errors have no common type
        raise ExportError(f"{source}: not a PyTorch file, and not an ONNX graph either ({error})") from None
    found = onnx_wrap.inspect(model, options.latent_input, options.label_input)
    if found.label_input and options.num_classes < 2:
        raise ExportError(f"--num-classes: the graph takes class labels ({found.label_input!r}); say how many "
                          "classes it knows, at least 2")
    if options.num_classes and not found.label_input:
        raise ExportError("--num-classes: the graph takes no class labels; leave --num-classes out")
    run_raw = _raw_runner(source, found)
    seeds = list(range(IMPORT_CHECK_SEEDS))
    raw = np.concatenate([run_raw(seeds[i:i + 100], options.num_classes) for i in range(0, len(seeds), 100)])
    if not np.array_equal(run_raw(seeds[:7], options.num_classes), raw[:7]):
        raise ExportError("the graph is not deterministic: the same latents gave other images on a second run "
                          "(does it draw its own noise?); ganserve needs image i to depend only on seed i")
    found = onnx_wrap.settle(found, raw, options.layout, options.range)
    checks = _check_raw(raw, found)
    path = folder / "generator.onnx"
    onnx.save(onnx_wrap.wrap(model, found), str(path))
    parity = _check_wrapped(path, run_raw, found, options.num_classes)
    write_spot_check(folder, _Sizes(found.latent_dim, options.num_classes), options.num_classes > 0,
                     with_discriminator=False)
    height, width, channels = onnx_wrap.image_shape(found, raw)
    files = model_files(folder)
    conditional = options.num_classes > 0
    card = ModelCard(
        name=name, version=f"imported-{files['generator.onnx'][:8]}", architecture="onnx",
        latent_dim=found.latent_dim, num_classes=options.num_classes, class_names=None, height=height, width=width,
        channels=channels,
        graphs={"generator": {"file": "generator.onnx", "inputs": ["z", "labels"] if conditional else ["z"],
                              "output": "images", "precision": "float32"}},
        files=files, calibration=None, parity={"generator": {**parity, **checks}},
        source={"imported_from": "onnx", "file": source.name, "sha256": sha256_file(source),
                "detected": found.describe()},
        export=_export_record("ganserve import: the graph wrapped with uint8 NHWC pre/post-processing",
                              onnx_wrap.opset_of(model)),
        format_version=GENERATOR_ONLY_FORMAT)
    card.write(folder)
    notes = [f"found: {found.describe()}",
             f"checked on {IMPORT_CHECK_SEEDS} seeds: finite, {checks['out_of_range_share']:.2%} of values outside "
             f"the range (clipped); deterministic; the same image alone or in a batch (max diff "
             f"{parity['alone_vs_batch_levels']} levels); wrapped pixels within {parity['max_level_diff']} levels of "
             "the raw output's",
             "no discriminator: /score, keep_top and drs_accept answer 400 for this model"]
    return card, notes


def _raw_runner(source: Path, found: onnx_wrap.Found):
    """seeds -> the foreign graph's own output for those seeds' latents (ganserve's seed contract)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    latent_type = onnx.helper.tensor_dtype_to_np_dtype(found.latent_type)

    def run(seeds: list[int], num_classes: int) -> np.ndarray:
        z = latents(seeds, found.latent_dim).astype(latent_type)
        feeds = {found.latent_input: z.reshape(len(seeds), -1, 1, 1) if found.latent_rank == 4 else z}
        if found.label_input:
            labels = label_array(seeds, None, num_classes)
            feeds[found.label_input] = labels.astype(onnx.helper.tensor_dtype_to_np_dtype(found.label_type))
        try:
            return session.run([found.output], feeds)[0]
        except Exception as error:  # ONNX Runtime's own exception types
            raise ExportError(f"{source}: running the graph on {len(seeds)} latents failed ({str(error)[:300]}); if "
                              "its batch size is fixed, export it with a dynamic batch axis") from None

    return run


def _check_raw(raw: np.ndarray, found: onnx_wrap.Found) -> dict:
    if not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).any(axis=(1, 2, 3)).sum())
        raise ExportError(f"output {found.output!r} is not finite for {bad} of {len(raw)} seeds; ganserve serves only "
                          "generators whose every image is finite")
    low, high = (-1.0, 1.0) if found.range == "tanh" else (0.0, 1.0)
    outside = float(np.mean((raw < low - 0.1) | (raw > high + 0.1)))
    if outside > OUT_OF_RANGE_SHARE:
        raise ExportError(f"{outside:.0%} of output values lie outside [{low:g}, {high:g}] by more than 0.1; the "
                          "range is likely another: pass --range tanh ([-1, 1]) or --range unit ([0, 1])")
    return {"seeds_checked": len(raw), "finite": True, "range": [low, high],
            "out_of_range_share": float(np.mean((raw < low) | (raw > high)))}


def _check_wrapped(path: Path, run_raw, found: onnx_wrap.Found, num_classes: int) -> dict:
    """The wrapped graph against the raw graph's output mapped in NumPy, at several batch sizes;
    then each image alone against the same image in a batch."""
    run_wrapped, runtime = open_runtime(path)

    def feeds(seeds):
        z = latents(seeds, found.latent_dim)
        labels = label_array(seeds, None, num_classes)
        return {"z": z, **({"labels": labels} if labels is not None else {})}

    max_diff = {}
    for batch in PARITY_BATCH_SIZES:
        seeds = list(range(batch))
        got = run_wrapped(feeds(seeds))
        expected = onnx_wrap.levels(run_raw(seeds, num_classes), found)
        if got.shape != expected.shape or got.dtype != np.uint8:
            raise ExportError(f"the wrapped graph gives {got.dtype}{list(got.shape)}, expected "
                              f"uint8{list(expected.shape)} at batch {batch}")
        max_diff[str(batch)] = int(np.abs(got.astype(np.int16) - expected.astype(np.int16)).max())
        if max_diff[str(batch)] > G_TOLERANCE.absolute:
            raise ExportError(f"the wrapped graph differs from the raw output by {max_diff[str(batch)]} levels at "
                              f"batch {batch}; nothing was written")
    seeds = list(range(7))
    first = run_wrapped(feeds(seeds))
    alone = np.concatenate([run_wrapped(feeds([seed])) for seed in seeds])
    alone_diff = int(np.abs(alone.astype(np.int16) - first.astype(np.int16)).max())
    if alone_diff > G_TOLERANCE.absolute:
        raise ExportError(f"an image alone differs from the same image in a batch by {alone_diff} levels (batch "
                          "statistics in the graph? export it in eval mode); ganserve needs image i to depend only "
                          "on seed i")
    return {"max_abs_diff": max_diff, "max_level_diff": max(max_diff.values()), "deterministic": True,
            "alone_vs_batch_levels": alone_diff, "tolerance": {"absolute": G_TOLERANCE.absolute, "relative": 0.0},
            "runtime": runtime}


def _export_record(exporter: str, opset: int) -> dict:
    return {"exporter": exporter, "opset": opset, "ganserve": package_version,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
