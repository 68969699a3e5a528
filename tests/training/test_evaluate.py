import json

import numpy as np
import pytest

from serving.cli import main
from tests.training.helpers import tiny_config
from training.evaluate import class_figures, frechet_distance
from training.loop import train


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_noise_is_large():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shifted = real + 3.0
    assert frechet_distance(real, shifted) == pytest.approx(8 * 9.0, rel=1e-6)  # |mu difference|^2
    assert frechet_distance(real, rng.normal(scale=5.0, size=(500, 8))) > 50


def test_class_figures_count_covered_classes():
    labels = np.arange(100) % 4
    assert class_figures(labels, labels, 4)["classes_covered"] == 4
    collapsed = class_figures(np.zeros(100, int), labels, 4)
    assert collapsed["classes_covered"] == 1 and collapsed["class_kl"] > 1


def test_eval_reports_figures_next_to_the_floor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANSERVE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    assert main(["eval", str(run), "--num-samples", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 200 and result["classifier_accuracy"] > 0.8
    assert result["fd"] > result["fd_real_vs_real"] > 0  # an untrained generator is far from real
    assert result["real_vs_real"]["classes_covered"] == 10
    assert list((tmp_path / "cache" / "eval-classifiers").glob("*.safetensors"))  # cached for next time
