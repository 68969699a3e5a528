"""Pinned values: the seed contract and the served pixels of two fixed tiny models
(tests/data/pinned-*, made once by tests/data/make_pinned_models.py), compared with numbers
stored here. Every path shares the same functions, so only stored values catch a change to
the contract itself (a new latent stream, another label default, a different pixel mapping).
Pixels may differ by one grey level across CPUs and ONNX Runtime versions, no more."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.engine import Engine
from serving.requests import generate_request
from serving.sampling.candidates import candidate_latent
from serving.sampling.latents import latent
from serving.sampling.rejection import uniform

DATA = Path(__file__).resolve().parents[1] / "data"
LEVELS = 1  # grey levels of tolerance


@pytest.fixture(scope="module")
def engine():
    return Engine(DATA / "pinned-dcgan", warmup=False)


def _close(got, expected) -> bool:
    return bool(np.all(np.abs(np.asarray(got, np.int64) - np.asarray(expected, np.int64)) <= LEVELS))


def test_the_latent_streams_of_a_seed():
    assert latent(0, 16)[:6].tolist() == pytest.approx(
        [1.1176220, -1.3871249, -0.4265716, -0.8035873, 0.6014277, -0.0749932], abs=1e-6)
    # truncation redraws only the components beyond psi, from the same stream
    assert latent(0, 16, 0.5)[:6].tolist() == pytest.approx(
        [0.0486282, -0.0210764, -0.4265716, -0.3382933, 0.4335317, -0.0749932], abs=1e-6)
    assert candidate_latent(0, 1, 16, None)[:4].tolist() == pytest.approx(
        [0.4559847, -2.1591032, -2.1299570, -0.7656990], abs=1e-6)
    assert uniform(0, 0) == pytest.approx(0.4492388188) and uniform(5, 3) == pytest.approx(0.9104238945)


@pytest.mark.parametrize("seed, row", [
    (0, [177, 141, 122, 123, 162, 121, 148, 164]),
    (1, [174, 199, 70, 164, 69, 88, 113, 175]),
    (2**40, [102, 157, 139, 119, 118, 159, 172, 166]),
])
def test_pixels_of_a_seed(engine, seed, row):
    assert engine.card.version == "s1-005102f9"
    assert _close(engine.generate([seed])[0][3, :, 0], row)
    assert _close(engine.generate([5, seed, 6])[1][3, :, 0], row)  # the same in any batch


def test_pixels_with_truncation_best_of_and_scores(engine):
    assert _close(engine.generate([3], truncation=0.5)[0][4, :, 0], [182, 118, 208, 153, 167, 202, 126, 201])
    assert engine.sample(generate_request(engine.card, seeds=[9], keep_top=0.25)).stats["chosen_candidate"] == [2]
    assert engine.score(engine.generate([0, 1]))[0].tolist() == pytest.approx([-0.07278, -0.05481], abs=2e-4)


def test_a_conditional_model_defaults_to_seed_modulo_classes():
    engine = Engine(DATA / "pinned-dcgan-conditional", warmup=False)
    row = [148, 175, 137, 195, 90, 109, 180, 116]
    assert _close(engine.generate([5])[0][2, :, 0], row)  # 5 % 3 = class 2
    assert _close(engine.generate([5], labels=[2])[0][2, :, 0], row)
    assert _close(engine.generate([5], labels=[0])[0][2, :, 0], [163, 81, 147, 136, 99, 118, 180, 151])


def test_the_batch_command_writes_the_pinned_pixels(tmp_path):
    from serving.cli import main

    assert main(["sample", str(DATA / "pinned-dcgan"), "--seeds", "1", "--out", str(tmp_path), "--no-progress",
                 "--workers", "1"]) == 0
    written = np.asarray(Image.open(io.BytesIO((tmp_path / "seed00000001.png").read_bytes())))
    assert _close(written[3], [174, 199, 70, 164, 69, 88, 113, 175])
