"""The training images' index: a training image finds itself, a re-encoded copy is still far
closer than any other image, and the index travels in the model folder, hashed."""

import io

import numpy as np
import pytest
from PIL import Image

from serving.engine import Engine
from serving.errors import ModelFolderError
from serving.formats.model_card import ModelCard
from serving.formats.train_index import TrainIndex, thumbnail_side, thumbnails
from training.data import load_dataset, split_holdout
from training.samples import to_uint8


def _faces(count: int, seed: int = 0) -> np.ndarray:
    """Smooth random 28x28 RGB pictures: blobs of colour, unlike each other."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 4, 4, 3)).astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(s.astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR))
                     for s in small])


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def test_thumbnails_average_whole_blocks():
    assert [thumbnail_side(h) for h in (8, 16, 28, 32, 64, 48)] == [8, 16, 14, 16, 16, 16]
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1).repeat(7, axis=1).repeat(7, axis=2)  # 28 px
    assert thumbnails(image).shape == (1, 14, 14, 1)


def test_copies_are_found_and_others_are_not():
    training = _faces(300)
    index = TrainIndex.of_images(training)
    similarity, rows = index.nearest(training[[5, 77]])
    np.testing.assert_allclose(similarity, 1.0, atol=1e-5)
    assert rows.tolist() == [5, 77]
    copies = np.stack([_jpeg(training[i], 40) for i in range(50)])  # re-encoded at JPEG quality 40
    copy_similarity, copy_rows = index.nearest(copies)
    others, _ = index.nearest(_faces(50, seed=1))  # new pictures of the same kind
    assert copy_rows.tolist() == list(range(50))
    assert copy_similarity.min() > others.max(), (copy_similarity.min(), others.max())


def test_export_indexes_the_training_split_only(model_dir, tmp_path):
    card = ModelCard.read(model_dir)
    assert card.has_train_index and card.train_index["count"] == 20 and card.train_index["split"] == "training split"
    data = load_dataset(card.source["dataset"])
    train, held_out = split_holdout(data, 0.5, 0)
    engine = Engine(model_dir, warmup=False)
    similarity, rows = engine.nearest_training(to_uint8(train.images))
    np.testing.assert_allclose(similarity, 1.0, atol=1e-5)
    assert rows.tolist() == list(range(20))
    held_out_similarity, _ = engine.nearest_training(to_uint8(held_out.images))
    assert held_out_similarity.max() < 0.9  # held-out images are not in it (noise: nothing like each other)
    assert card.train_index["held_out"] == {"count": 20, "p50": pytest.approx(np.median(held_out_similarity), abs=1e-4),
                                            "p99": pytest.approx(np.percentile(held_out_similarity, 99), abs=1e-4),
                                            "max": pytest.approx(held_out_similarity.max(), abs=1e-4)}
    damaged = tmp_path / "model"
    import shutil

    shutil.copytree(model_dir, damaged)
    with np.load(damaged / "train_index.npz") as archive:
        parts = {k: archive[k] for k in archive.files}
    parts["thumbs"][0] ^= 1
    np.savez(damaged / "train_index.npz", **parts)
    with pytest.raises(ModelFolderError, match="train_index.npz: sha256 does not match"):
        ModelCard.read(damaged)


def test_export_without_the_training_data_says_so(tmp_path, capsys):
    from export.exporter import ExportOptions, export_model
    from export.verify import ExportError
    from tests.conftest import make_release

    release = make_release(tmp_path / "run")
    (tmp_path / "run" / "data.npz").unlink()  # the data stayed on the training machine
    export_model(release, ExportOptions(out=tmp_path / "model", calibration_samples=20))
    assert "note: no training-image index" in capsys.readouterr().out
    card = ModelCard.read(tmp_path / "model")
    assert card.train_index is None and "train_index.npz" not in card.files
    with pytest.raises(ExportError, match="--index-data"):  # named, its failure stops the export
        export_model(release, ExportOptions(out=tmp_path / "model2", calibration_samples=20,
                                            index_data=f"npz:{tmp_path / 'missing.npz'}"))
