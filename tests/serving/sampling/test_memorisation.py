"""max_train_similarity: images above the threshold are redrawn from their seed's own stream;
the rest are the plain images, byte for byte; and the rule's mistakes are refused by name."""

import numpy as np
import pytest

from export.exporter import ExportOptions, export_model
from serving.engine import Engine
from serving.errors import NoTrainIndex, ServingError
from serving.requests import generate_request
from tests.conftest import make_release


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, warmup=False)


def test_near_copies_are_redrawn_and_the_rest_kept(engine):
    seeds = list(range(64))
    plain = engine.generate(seeds)
    similarity, _ = engine.nearest_training(plain)
    threshold = float(np.median(similarity))
    guarded = engine.sample(generate_request(engine.card, seeds=seeds, max_train_similarity=threshold))
    after, _ = engine.nearest_training(guarded.images)
    above = similarity > threshold
    assert guarded.stats["redrawn"] == int(above.sum()) > 0
    assert np.all(after[above] < similarity[above])
    assert np.sum(after > threshold) == guarded.stats["still_above"]
    np.testing.assert_array_equal(guarded.images[~above], plain[~above])  # untouched: the plain images
    again = engine.sample(generate_request(engine.card, seeds=seeds[10:20], max_train_similarity=threshold))
    np.testing.assert_array_equal(again.images, guarded.images[10:20])  # a function of the seed, not the batch


def test_the_guard_is_refused_where_it_cannot_work(engine, tmp_path):
    with pytest.raises(ServingError, match="max_train_similarity: 1.5 is not allowed; use a number from 0 to 1"):
        generate_request(engine.card, seed=1, max_train_similarity=1.5)
    with pytest.raises(ServingError, match="max_train_similarity: redraws in plain generation; leave out keep_top"):
        generate_request(engine.card, seed=1, keep_top=0.5, max_train_similarity=0.9)
    with pytest.raises(ServingError, match="max_train_similarity: redraws from seeds' streams, and latents have none"):
        generate_request(engine.card, latents=[[0.0] * 16], max_train_similarity=0.9)
    release = make_release(tmp_path / "run")
    export_model(release, ExportOptions(out=tmp_path / "model", calibration_samples=20, train_index=False))
    unindexed = Engine(tmp_path / "model", warmup=False)
    with pytest.raises(NoTrainIndex, match="was exported without an index of its training images") as error:
        generate_request(unindexed.card, seed=1, max_train_similarity=0.9)
    assert error.value.status_code == 400


def test_sample_guards_against_copies_too(model_dir, tmp_path, engine):
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    seeds = list(range(32))
    similarity, _ = engine.nearest_training(engine.generate(seeds))
    threshold = float(np.median(similarity))
    ganserve = Path(sys.executable).parent / "ganserve"
    run = subprocess.run([str(ganserve), "sample", str(model_dir), "--seeds", "0-31", "--out", str(tmp_path / "s"),
                          "--max-train-similarity", str(threshold), "--no-progress", "--workers", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = engine.sample(generate_request(engine.card, seeds=seeds, max_train_similarity=threshold)).images
    for seed in seeds:
        written = np.asarray(Image.open(tmp_path / "s" / f"seed{seed:08d}.png"))
        assert np.array_equal(written, expected[seed][:, :, 0])
    refused = subprocess.run([str(ganserve), "sample", str(model_dir), "--seeds", "0-3", "--out", str(tmp_path / "t"),
                              "--keep-top", "0.5", "--max-train-similarity", "0.9"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "--max-train-similarity: redraws in plain generation; leave out --keep-top" in refused.stderr
