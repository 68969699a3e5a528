import json

import numpy as np
import pytest

from serving.cli import main
from tests.training.helpers import tiny_config
from training.evaluate import class_figures, ratio_to_floor
from training.loop import train
from training.metrics import frechet_distance, kernel_inception_distance, precision_recall_density_coverage


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_noise_is_large():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shifted = real + 3.0
    assert frechet_distance(real, shifted) == pytest.approx(8 * 9.0, rel=1e-6)  # |mu difference|^2
    assert frechet_distance(real, rng.normal(scale=5.0, size=(500, 8))) > 50


def test_kid_is_near_zero_for_one_distribution_and_large_for_disjoint_sets():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    assert abs(kernel_inception_distance(a, b)) < 0.02
    assert kernel_inception_distance(a, a + 4.0) > 1.0


def test_precision_recall_density_coverage_on_constructed_sets():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 4))
    same = precision_recall_density_coverage(real, real)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = precision_recall_density_coverage(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    collapsed = precision_recall_density_coverage(real, np.zeros((400, 4)) + real[0])  # one mode only
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05


def test_class_figures_count_covered_classes():
    labels = np.arange(100) % 4
    assert class_figures(labels, labels, 4)["classes_covered"] == 4
    collapsed = class_figures(np.zeros(100, int), labels, 4)
    assert collapsed["classes_covered"] == 1 and collapsed["class_kl"] > 1


def test_eval_reports_figures_next_to_the_floor(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    assert main(["eval", str(run), "--num-samples", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 200 and result["classifier_accuracy"] > 0.8
    generated, floor = result["generated"], result["real_vs_real"]
    assert generated["fd"] > floor["fd"] > 0  # an untrained generator is far from real
    assert generated["precision"] < floor["precision"] and floor["classes_covered"] == 10
    assert "digits" in _classifier_sources()  # cached for next time (one per session: conftest.private_cache)
    # a set of samples instead of a run: the real data against itself is at the floor
    np.savez(tmp_path / "real.npz", images=_digits_uint8())
    assert main(["eval", "--samples", f"npz:{tmp_path / 'real.npz'}", "--data", "digits", "--json",
                 "--num-samples", "200"]) == 0
    itself = json.loads(capsys.readouterr().out)["generated"]
    assert itself["precision"] > 0.8 and itself["classes_covered"] == 10


def _classifier_sources() -> list[str]:
    """The data set of every evaluation classifier cached in this session."""
    from serving.formats.files import cache_dir

    return [json.loads(info.read_text())["source"] for info in (cache_dir() / "eval-classifiers").glob("*.json")]


def _digits_uint8() -> np.ndarray:
    from training.data import load_dataset
    from training.samples import to_uint8

    return to_uint8(load_dataset("digits").images.flip(0))  # real digits, in another order than the halves


def test_eval_without_a_run_needs_samples_and_data(capsys):
    assert main(["eval", "--samples", "npz:x.npz"]) == 2
    assert "--samples SPEC together with --data SPEC" in capsys.readouterr().err


def test_eval_report_writes_the_page_and_its_plots(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=3, checkpoint_every=3), run, progress=False)
    assert main(["eval", str(run), "--num-samples", "100", "--report", str(tmp_path / "report")]) == 0
    assert "report:" in capsys.readouterr().out
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "samples.png", "losses.png", "d_probability.png", "fd_truncation.png"} <= files
    page = (tmp_path / "report" / "report.md").read_text()
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    assert f"| fd | {result['generated']['fd']} |" in page and "![samples](samples.png)" in page


def test_training_evaluates_every_n_steps_and_keeps_the_best_release(tmp_path, capsys):
    from training.release import read_release

    run = tmp_path / "run"
    train(tiny_config(steps=4, eval_every=2, eval_samples=100, checkpoint_every=4), run, progress=False)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [2, 4]
    best = min(evals, key=lambda e: e["eval"]["fd"])
    release = read_release(run / "release-best")
    assert release.metadata.step == best["step"] and release.metadata.eval["fd"] == best["eval"]["fd"]
    # one definition: `ganserve eval` of the final release prints what training logged at its step,
    # with the one classifier trained for this data set
    assert main(["eval", str(run / "release"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 100 and result["generated"]["fd"] == evals[-1]["eval"]["fd"]
    assert _classifier_sources().count("digits") == 1


@pytest.mark.slow
def test_eval_of_samples_brings_a_mixed_size_folder_to_the_samples_shape(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(60):
            size = (20 + i % 7, 16 + i % 5)  # odd, mixed sizes: only --resolution makes them one shape
            pixels = rng.integers(0, 255 if label == "a" else 60, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.png")
    np.savez(tmp_path / "s.npz", images=rng.integers(0, 255, (60, 8, 8, 3), dtype=np.uint8))
    assert main(["eval", "--samples", f"npz:{tmp_path / 's.npz'}", "--data", f"folder:{tmp_path / 'photos'}",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 60 and result["real_vs_real"]["fd"] < result["generated"]["fd"]


def test_model_folder_images_follow_the_serving_seed_contract(model_dir, conditional_model_dir):
    import torch

    from serving.engine import Engine
    from training.evaluate import model_folder_images

    for folder in (model_dir, conditional_model_dir):
        images = model_folder_images(folder, list(range(10)))
        served = Engine(folder, warmup=False).generate(range(10))  # uint8 (N, H, W, C)
        expected = torch.from_numpy(served).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        assert torch.equal(images, expected)


def test_a_run_and_its_exported_model_are_scored_on_the_same_images(tmp_path, capsys):
    """One model, one set of figures: the run's G draws seeds 0..N-1 on the serving seed contract,
    rounded to uint8 levels, as its exported model does (the two within the export's parity)."""
    from export.exporter import ExportOptions, export_model
    from training.evaluate import generator_images, model_folder_images
    from training.release import read_release

    run, model = tmp_path / "run", tmp_path / "model"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    export_model(run / "release", ExportOptions(out=model, calibration_samples=20))
    release = read_release(run)
    seeds = list(range(64))
    from_run = generator_images(release.build_generator(), release.spec.latent_dim, release.spec.num_classes, seeds)
    from_model = model_folder_images(model, seeds)
    assert float((from_run - from_model).abs().max()) <= 1 / 127.5 + 1e-6  # at most one level apart
    figures = {}
    for source in (run, model):
        assert main(["eval", str(source), "--num-samples", "200", "--json"]) == 0
        figures[source.name] = json.loads(capsys.readouterr().out)
    assert figures["run"]["real_vs_real"] == figures["model"]["real_vs_real"]
    assert figures["run"]["generated"]["fd"] == pytest.approx(figures["model"]["generated"]["fd"], rel=0.02)


def _inception_like_onnx(path, channels: int = 3, side: int = 32) -> None:
    """A small stand-in with the Inception contract: float (N, C, side, side) in [0, 1] ->
    pooled features (N, 16, 1, 1). Real ONNX, run by real ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((16, channels, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["h"], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["pool3"])],
        "inception_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", channels, side, side])],
        [helper.make_tensor_value_info("pool3", TensorProto.FLOAT, ["N", 16, 1, 1])],
        [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.mark.slow
def test_eval_in_a_user_supplied_inception_space(tmp_path, capsys):
    _inception_like_onnx(tmp_path / "inception.onnx")
    np.savez(tmp_path / "real.npz", images=_digits_uint8())
    noise = np.random.default_rng(1).integers(0, 256, (400, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", images=noise)
    figures = {}
    for name in ("real", "noise"):
        assert main(["eval", "--samples", f"npz:{tmp_path / name}.npz", "--data", "digits", "--json",
                     "--num-samples", "200", "--inception", str(tmp_path / "inception.onnx")]) == 0
        figures[name] = json.loads(capsys.readouterr().out)
    assert figures["real"]["feature_space"].startswith("Inception-v3 from inception.onnx")
    assert figures["noise"]["generated"]["fd"] > 5 * figures["real"]["generated"]["fd"]
    assert figures["real"]["generated"]["classes_covered"] == 10  # classes still from the data's classifier
    # the features really are the file's: 16 of them, so a different FD than the classifier's 128
    assert main(["eval", "--samples", f"npz:{tmp_path / 'real.npz'}", "--data", "digits", "--json",
                 "--num-samples", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["generated"]["fd"] != figures["real"]["generated"]["fd"]


def test_eval_refuses_an_inception_file_it_cannot_use(tmp_path, capsys):
    _inception_like_onnx(tmp_path / "gray.onnx", channels=1)
    (tmp_path / "weights.pth").write_bytes(b"\x80\x04not onnx")
    for name, message in (("gray.onnx", "expected float32 (N, 3, H, W)"), ("weights.pth", "not an ONNX graph"),
                          ("missing.onnx", "no such file")):
        assert main(["eval", "--samples", "npz:x.npz", "--data", "digits", "--inception", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert message in err and name in err and len(err.strip().splitlines()) == 1


def test_no_ratio_is_given_against_a_floor_of_zero():
    assert ratio_to_floor(0.5, 0.25) == 2.0
    assert ratio_to_floor(0.0008, 0.0) is None and ratio_to_floor(0.0008, 1e-9) is None


def test_eval_without_labels_compares_in_a_contrastive_encoder_s_features(tmp_path, capsys):
    real = _digits_uint8()
    np.savez(tmp_path / "real.npz", images=real)  # no labels: the encoder learns from the images alone
    np.savez(tmp_path / "noise.npz", images=np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8))
    assert main(["eval", "--samples", f"npz:{tmp_path / 'noise.npz'}", "--data", f"npz:{tmp_path / 'real.npz'}",
                 "--num-samples", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["feature_space"] == "contrastive encoder trained on the real images (no labels)"
    assert result["classifier_accuracy"] is None
    assert result["encoder_instance_accuracy"] > 0.05  # of 2 x 179 held-out views: chance is under 0.003
    assert result["real_vs_real"]["fd"] > 1e-3  # a floor that is a yardstick, unlike an untrained network's
    assert result["fd_ratio_to_floor"] > 10 and "classes_covered" not in result["generated"]


def test_eval_refuses_classifier_features_for_unlabelled_data(tmp_path, capsys):
    np.savez(tmp_path / "real.npz", images=_digits_uint8())
    assert main(["eval", "--samples", f"npz:{tmp_path / 'real.npz'}", "--data", f"npz:{tmp_path / 'real.npz'}",
                 "--features", "classifier"]) == 2
    err = capsys.readouterr().err
    assert "--features classifier needs labelled data" in err and "--features contrastive" in err


def _shapes_folder(folder, count: int = 600, side: int = 24):
    """Unlabelled RGB pictures with detail to lose: a gradient background, a patch of stripes one
    to three pixels wide, a coloured rectangle and a disc, each drawn at random; what a small photo
    folder looks like to the evaluation, made here."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    folder.mkdir()
    ramp = np.linspace(0, 1, side)[:, None, None]
    for i in range(count):
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        pixels = (top * (1 - ramp) + bottom * ramp).repeat(side, 1)
        y, x, period = *rng.integers(0, side - 10, 2), rng.integers(2, 7)
        stripes = (np.arange(10)[None, :] + np.zeros((10, 1))) % period < period / 2  # (10, 10)
        patch = pixels[y:y + 10, x:x + 10]
        patch[stripes] = rng.integers(0, 256, 3)
        picture = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        x, y = rng.integers(0, side - 8, 2)
        draw.rectangle([x, y, x + rng.integers(3, 8), y + rng.integers(3, 8)], fill=tuple(rng.integers(0, 256, 3)))
        x, y = rng.integers(0, side - 7, 2)
        draw.ellipse([x, y, x + 6, y + 6], fill=tuple(rng.integers(0, 256, 3)))
        picture.save(folder / f"{i:04d}.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_features_rank_known_degradations(tmp_path, seed):
    """The metric validated as a metric: on unlabelled pictures and on unlabelled digits, each
    degradation is farther from the real images than the real-vs-real floor, by a margin (5x for
    collapse and noise, 5% for blur and JPEG, whose effect on small pictures is subtle), and blur
    x4 farther than blur x2 (training/degradations.py)."""
    from training.data import load_dataset
    from training.degradations import DEGRADATIONS, ORDERED_PAIRS
    from training.evaluate import Comparison

    np.savez(tmp_path / "digits.npz", images=_digits_uint8())
    for spec in (f"folder:{_shapes_folder(tmp_path / 'shapes')}", f"npz:{tmp_path / 'digits.npz'}"):
        comparison = Comparison(load_dataset(spec), 300, seed, features="contrastive")
        sets = {"real vs real": comparison.real_b,
                **{name: degrade(comparison.real_b) for name, degrade in DEGRADATIONS.items()}}
        fd = {name: comparison.figures(images)["fd"] for name, images in sets.items()}
        for milder, stronger in ORDERED_PAIRS:
            margin = 5.0 if stronger in ("one image repeated", "noise") else 1.05  # blur and JPEG are subtler
            assert fd[stronger] > margin * fd[milder], (spec, milder, stronger, fd)
