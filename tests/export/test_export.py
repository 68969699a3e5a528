import json
import pickle
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.exporter import G_FP16_TOLERANCE, ExportOptions, export_model
from export.verify import ExportError
from serving.cli import main
from serving.formats.files import sha256_file
from tests.conftest import make_release
from training.errors import CheckpointError
from training.release import read_release
from training.samples import to_uint8


def _export(tmp_path, name="m", **kwargs):
    release = make_release(tmp_path / "run", **kwargs)
    out = tmp_path / "models" / name
    card = export_model(release, ExportOptions(out=out, calibration_samples=20))
    return release, out, card


@pytest.mark.parametrize("arch,resolution,channels,classes", [
    ("dcgan", 8, 1, 0),  # the edit loop's one case (make test-fast); the others are slow
    *(pytest.param(*case, marks=pytest.mark.slow) for case in [
        ("mlp", 28, 1, 0), ("mlp", 8, 3, 4), ("dcgan", 16, 3, 0), ("dcgan", 28, 1, 10), ("dcgan", 32, 3, 0),
        ("dcgan", 64, 1, 0), ("dcgan", 64, 3, 5)])])
def test_every_architecture_exports_with_parity(tmp_path, arch, resolution, channels, classes):
    release, out, card = _export(tmp_path, arch=arch, resolution=resolution, channels=channels, num_classes=classes)
    assert set(card["parity"]["generator"]["max_abs_diff"]) == {"1", "7", "64"}
    assert max(card["parity"]["generator"]["max_abs_diff"].values()) <= 1
    assert max(card["parity"]["discriminator"]["max_abs_diff"].values()) < 1e-3
    # independent check: ONNX Runtime on the file vs the release's own PyTorch generator
    session = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((5, 16), dtype=np.float32)
    feeds = {"z": z, **({"labels": np.arange(5, dtype=np.int64) % classes} if classes else {})}
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        labels = torch.from_numpy(feeds["labels"]) if classes else None
        expected = to_uint8(read_release(release).build_generator()(torch.from_numpy(z), labels))
    assert got.shape == (5, resolution, resolution, channels) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert [i.name for i in session.get_inputs()] == (["z", "labels"] if classes else ["z"])


@pytest.mark.slow
def test_fp16_graphs_are_written_and_close(tmp_path):
    release = make_release(tmp_path / "run")
    out = tmp_path / "m"
    card = export_model(release, ExportOptions(out=out, fp16=True, calibration_samples=20))
    assert card["graphs"]["generator_fp16"]["precision"] == "float16"
    assert max(card["parity"]["generator_fp16"]["max_abs_diff"].values()) <= G_FP16_TOLERANCE.absolute
    fp16 = ort.InferenceSession(str(out / "generator.fp16.onnx"), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(1).standard_normal((7, 16), dtype=np.float32)
    assert fp16.get_inputs()[0].type == "tensor(float)"  # float32 in and uint8 out, like fp32
    diff = np.abs(fp16.run(None, {"z": z})[0].astype(int) - fp32.run(None, {"z": z})[0].astype(int))
    assert diff.max() <= G_FP16_TOLERANCE.absolute


def test_model_json_lists_every_file_with_its_hash(tmp_path):
    release, out, card = _export(tmp_path)
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk == card
    assert set(card["files"]) == {"generator.onnx", "discriminator.onnx", "spot_check.npz", "train_index.npz"}
    for name, digest in card["files"].items():
        assert sha256_file(out / name) == digest
    for key in ("format_version", "name", "version", "architecture", "latent_dim", "num_classes", "class_names",
                "height", "width", "channels", "source", "calibration", "parity", "export", "train_index"):
        assert key in card
    assert card["source"]["sha256"] == read_release(release).files
    assert card["export"]["opset"] == 18 and card["name"] == "m"


def test_calibration_gives_probabilities_and_auroc(tmp_path):
    from serving.engine import Engine

    release, out, card = _export(tmp_path)
    calibration = card["calibration"]
    assert calibration["split"] == "held-out split" and calibration["num_real"] == 20
    engine = Engine(out, warmup=False)
    # the AUROC is D's on the held-out real images against as many generated ones, recomputed here
    from sklearn.metrics import roc_auc_score

    from export.exporter import generated_logits

    real_logits = engine.score(read_release(release).calibration().images[:20])[0]
    fake_logits = generated_logits(out, 20, card["latent_dim"])
    recomputed = roc_auc_score([1] * 20 + [0] * 20, np.concatenate([real_logits, fake_logits]))
    assert calibration["auroc"] == pytest.approx(recomputed, abs=1e-6)
    images = np.load(tmp_path / "run" / "data.npz")["images"]
    logits, probabilities = engine.score(np.concatenate([images, engine.generate(range(40))]))
    assert np.all((probabilities > 0) & (probabilities < 1))
    expected = 1 / (1 + np.exp(-(calibration["a"] * logits.astype(np.float64) + calibration["b"])))
    assert np.allclose(probabilities, expected, atol=1e-6)


def test_platt_fit_on_separable_scores():
    from training.calibration import fit_platt

    rng = np.random.default_rng(0)
    fit = fit_platt(rng.normal(2, 1, 500), rng.normal(-2, 1, 500))
    assert 0.97 < fit["auroc"] <= 1.0 and fit["a"] > 0
    assert fit["brier"] < 0.1
    assert not fit["degenerate"] and fit["warnings"] == []
    # logistic truth: p = sigmoid(2 * logit); a well-sampled fit recovers the slope
    logits = rng.normal(0, 2, 4000)
    real = rng.random(4000) < 1 / (1 + np.exp(-2 * logits))
    fit = fit_platt(logits[real], logits[~real])
    assert fit["a"] == pytest.approx(2.0, rel=0.15) and abs(fit["b"]) < 0.3


def test_platt_fit_cannot_diverge_on_separable_data_and_says_so():
    from training.calibration import fit_platt

    rng = np.random.default_rng(1)
    real, fake = rng.normal(5, 0.3, 50), rng.normal(-5, 0.3, 50)  # 50 + 50, perfectly apart
    fit = fit_platt(real, fake)
    assert fit["auroc"] == 1.0 and fit["degenerate"]
    assert any(w.startswith("small: 50 real") for w in fit["warnings"])
    assert any(w.startswith("separable") for w in fit["warnings"])
    assert 0 < fit["a"] < 2  # unregularised, this fit ran to a slope of 100+ (every score 0 or 1)
    middle = 1 / (1 + np.exp(-(fit["a"] * 0.5 + fit["b"])))  # halfway between the classes: not 0 or 1
    assert 0.2 < middle < 0.8


@pytest.mark.slow
def test_existing_output_needs_force_and_nothing_half_written(tmp_path, capsys):
    release, out, _ = _export(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    assert main(["export", str(release), "--out", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["export", str(release), "--out", str(out), "--force", "--calibration-samples", "20"]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["m"]  # no temp folders left


def test_missing_and_half_written_release(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        export_model(tmp_path, ExportOptions(out=tmp_path / "out"))
    release = make_release(tmp_path / "run")
    (release / "generator.safetensors").unlink()
    with pytest.raises(CheckpointError, match="generator.safetensors is missing"):
        export_model(release, ExportOptions(out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_newer_format_version_is_refused(tmp_path):
    release = make_release(tmp_path / "run")
    config = json.loads((release / "config.json").read_text())
    (release / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is newer"):
        export_model(release, ExportOptions(out=tmp_path / "out"))


def test_pickled_weights_are_refused_even_with_a_matching_hash(tmp_path):
    release = make_release(tmp_path / "run")
    weights = release / "generator.safetensors"
    weights.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    config = json.loads((release / "config.json").read_text())
    config["files"]["generator.safetensors"] = sha256_file(weights)
    (release / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        export_model(release, ExportOptions(out=tmp_path / "out"))


@pytest.mark.slow
def test_a_conditional_export_prints_no_exporter_warnings(tmp_path):
    import warnings

    release = make_release(tmp_path / "run", num_classes=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(release, ExportOptions(out=tmp_path / "out", calibration_samples=20))
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []


def test_weights_of_an_earlier_network_layout_are_refused_in_one_line(tmp_path, capsys):
    # As conditional dcgan releases were before the class moved into G's normalisations: the
    # class embedding joined to z at the input (input.embed, project over 2 x latent).
    from safetensors.torch import load_file, save_file

    release = make_release(tmp_path / "run", num_classes=3)
    weights = release / "generator.safetensors"
    state = {key: value for key, value in load_file(str(weights)).items() if not key.startswith("modulations.")}
    state["input.embed.weight"] = state.pop("embed.weight")
    state["project.weight"] = torch.cat([state["project.weight"]] * 2, dim=1)
    save_file(state, str(weights))
    config = json.loads((release / "config.json").read_text())
    config["files"]["generator.safetensors"] = sha256_file(weights)
    (release / "config.json").write_text(json.dumps(config))
    assert main(["export", str(release), "--out", str(tmp_path / "out")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "generator.safetensors: these weights do not fit the networks" in errors[0]
    assert '"input.embed.weight"' in errors[0] and "use the version that trained them" in errors[0]
    assert not (tmp_path / "out").exists()


def test_calibration_data_of_the_wrong_shape_is_refused(tmp_path):
    release = make_release(tmp_path / "run")
    np.savez(tmp_path / "other.npz", images=np.zeros((10, 16, 16), np.uint8))
    with pytest.raises(ExportError, match="expects"):
        export_model(release, ExportOptions(out=tmp_path / "out", calibration_data=f"npz:{tmp_path / 'other.npz'}"))
    assert not (tmp_path / "out").exists()
    shutil.rmtree(release)


def test_export_cli_prints_a_summary(tmp_path, capsys):
    release = make_release(tmp_path / "run")
    assert main(["export", str(release), "--out", str(tmp_path / "digits"), "--calibration-samples", "20"]) == 0
    out = capsys.readouterr().out
    assert "exported digits" in out and "AUROC" in out and "CPUExecutionProvider" in out


@pytest.mark.slow
def test_a_release_alone_exports_on_another_machine(tmp_path):
    """The release carries the held-out images D is calibrated on: a copy without the data set
    exports, with the calibration of a release that still finds its data set."""
    here = make_release(tmp_path / "run")
    moved = tmp_path / "elsewhere" / "release"
    shutil.copytree(here, moved)
    (tmp_path / "run" / "data.npz").unlink()  # the data set is gone
    card = export_model(moved, ExportOptions(out=tmp_path / "moved-model", calibration_samples=20))
    legacy = make_release(tmp_path / "legacy", with_calibration=False)  # loads its data set again
    reference = export_model(legacy, ExportOptions(out=tmp_path / "legacy-model", calibration_samples=20))
    assert card["calibration"]["split"] == reference["calibration"]["split"] == "held-out split"
    assert card["calibration"]["num_real"] == reference["calibration"]["num_real"] == 20
    assert card["calibration"]["a"] == pytest.approx(reference["calibration"]["a"])
    assert card["calibration"]["b"] == pytest.approx(reference["calibration"]["b"])


def test_a_changed_calibration_file_is_refused(tmp_path):
    release = make_release(tmp_path / "run")
    np.savez(release / "calibration.npz", images=np.zeros((20, 8, 8, 1), np.uint8))
    with pytest.raises(CheckpointError, match="calibration.npz: sha256 does not match"):
        export_model(release, ExportOptions(out=tmp_path / "out"))
