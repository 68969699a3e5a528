"""Model versions as a repository receives them: copied in whole, and the ones that load but
must not be served (a damaged file, a card edited by hand, and generators consistent with
their own spot check, as a faulty exporter would leave them, that draw one image for every
seed, or NaN).

Shared by the repository tests and `benchmarks/server/swap_bench.py`.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from serving.formats import spot_check
from serving.formats.files import sha256_file
from serving.sampling.latents import generator_feeds, label_array, latents


def copy_version(source: Path, target: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """Copy a model folder in as a version, the way an operator should: into a hidden folder
    beside it, then renamed into place, so a poll never sees half a copy. `edit` changes the
    hidden copy before the rename: a broken version is never seen whole and unbroken."""
    staging = target.with_name(f".{target.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if edit is not None:
        edit(staging)
    staging.rename(target)
    return target


def two_models(root: Path, first: Path, second: Path) -> Path:
    """A repository: digits (one version, `first`) and faces (versions 1 = `first`, 2 = `second`)."""
    (root / "faces").mkdir(parents=True)
    copy_version(first, root / "digits")
    copy_version(first, root / "faces" / "1")
    copy_version(second, root / "faces" / "2")
    return root


def damaged(source: Path, target: Path) -> Path:
    """generator.onnx with bytes changed in the middle: its sha256 no longer matches model.json."""
    def damage(folder: Path) -> None:
        path = folder / "generator.onnx"
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 16] = bytes(16)
        path.write_bytes(bytes(data))
    return copy_version(source, target, damage)


def edited_calibration(source: Path, target: Path) -> Path:
    """model.json with D's calibration edited by hand (every image would score p_real ~1)."""
    def edit(folder: Path) -> None:
        card = json.loads((folder / "model.json").read_text())
        card["calibration"]["b"] = card["calibration"]["b"] + 40.0
        (folder / "model.json").write_text(json.dumps(card, indent=2))
    return copy_version(source, target, edit)


def constant_generator(source: Path, target: Path) -> Path:
    """G's latent multiplied by 0: the same image for every seed."""
    return _scaled_latent(source, target, 0.0)


def nan_generator(source: Path, target: Path) -> Path:
    """G's latent multiplied by NaN: NaN everywhere, which the uint8 cast makes black."""
    return _scaled_latent(source, target, float("nan"))


def _scaled_latent(source: Path, target: Path, factor: float) -> Path:
    """G's graph with its input z scaled by `factor`, then the spot check and the hashes made
    again to match it, so the version passes verification and only the gate can refuse it."""
    def edit(folder: Path) -> None:
        path = folder / "generator.onnx"
        model = onnx.load(str(path))
        graph = model.graph
        for node in graph.node:
            node.input[:] = ["z_scaled" if name == "z" else name for name in node.input]
        graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "z_factor"))
        graph.node.insert(0, helper.make_node("Mul", ["z", "z_factor"], ["z_scaled"]))
        onnx.save(model, str(path))
        card = json.loads((folder / "model.json").read_text())
        _rewrite_spot_check(folder, card)
        card["files"] = {name: sha256_file(folder / name) for name in card["files"]}
        (folder / "model.json").write_text(json.dumps(card, indent=2))
    return copy_version(source, target, edit)


def _rewrite_spot_check(folder: Path, card: dict) -> None:
    seeds = list(spot_check.SEEDS)
    labels = label_array(seeds, None, card["num_classes"])
    sessions = {key: ort.InferenceSession(str(folder / card["graphs"][key]["file"]),
                                          providers=["CPUExecutionProvider"])
                for key in ("generator", "discriminator") if key in card["graphs"]}
    run_d = (lambda feeds: sessions["discriminator"].run(None, feeds)[0]) if "discriminator" in sessions else None
    saved = spot_check.reference(lambda feeds: sessions["generator"].run(None, feeds)[0], run_d,
                                 generator_feeds(latents(seeds, card["latent_dim"]), labels), labels)
    buffer = io.BytesIO()
    np.savez(buffer, **saved)
    (folder / spot_check.FILE).write_bytes(buffer.getvalue())


BROKEN = {"damaged file": damaged, "hand-edited card": edited_calibration,
          "constant generator": constant_generator, "NaN generator": nan_generator}
