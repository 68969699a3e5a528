from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_idx
from training.data import load_dataset, split_holdout
from training.errors import DataError


def test_digits_is_builtin_scaled_to_unit_range_with_ten_classes():
    data = load_dataset("digits")
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.min() == -1.0 and data.images.max() == 1.0
    assert data.labels.shape == (1797,) and data.class_names == [str(i) for i in range(10)]


def test_digits_resized_and_converted_to_rgb():
    data = load_dataset("digits", resolution=16, channels=3)
    assert data.images.shape == (1797, 3, 16, 16)
    assert torch.equal(data.images[:, 0], data.images[:, 2])


def test_idx_folder_reads_gzipped_images_and_labels(idx_dir):
    data = load_dataset(f"idx:{idx_dir}")
    assert data.images.shape == (40, 1, 28, 28)
    assert data.labels.tolist() == [i % 2 for i in range(40)]
    # bright square of class 0 maps to near +1
    assert data.images[0, 0, 14, 14] == pytest.approx(250 / 127.5 - 1)


def test_idx_with_bad_magic_names_the_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04" + bytes(100))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*magic"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_with_truncated_payload_says_sizes(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="file holds 3126"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_labels_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="expected 4 labels"):
        load_dataset(f"idx:{tmp_path}")


def _png(path: Path, size=(12, 12), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_folder_with_class_subfolders_gives_labels(tmp_path):
    for name, value in (("cats", 10), ("dogs", 200)):
        for i in range(3):
            _png(tmp_path / name / f"{i}.png", value=value)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ["cats", "dogs"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images.shape == (6, 1, 12, 12)
    assert data.images[3, 0, 0, 0] == pytest.approx(200 / 127.5 - 1)


def test_folder_mixed_sizes_need_resolution(tmp_path):
    _png(tmp_path / "a.png", size=(12, 12))
    _png(tmp_path / "b.png", size=(20, 10))
    with pytest.raises(DataError, match=r"b\.png: size 20x10 differs.*--resolution"):
        load_dataset(f"folder:{tmp_path}")
    data = load_dataset(f"folder:{tmp_path}", resolution=8, channels=3)
    assert data.images.shape == (2, 3, 8, 8)


def test_folder_rgb_kept_as_rgb(tmp_path):
    _png(tmp_path / "a.png", mode="RGB", value=0)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.images.shape == (1, 3, 12, 12)
    assert data.images[0, :, 0, 0].tolist() == pytest.approx([-1.0, -1.0, 1.0])


def test_folder_unreadable_image_is_named(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png: cannot be read"):
        load_dataset(f"folder:{tmp_path}")


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no PNG or JPEG images"):
        load_dataset(f"folder:{tmp_path}")


def test_npz_uint8_nhwc_with_labels(tmp_path):
    images = np.full((5, 10, 10, 3), 255, np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([0, 1, 2, 1, 0]))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.shape == (5, 3, 10, 10) and data.images.max() == 1.0
    assert data.num_classes == 3


def test_npz_float_unit_range_is_rescaled(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 8, 8), np.float32))
    assert load_dataset(f"npz:{tmp_path / 'd.npz'}").images.min() == -1.0


def test_npz_out_of_range_floats_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.full((2, 8, 8), 3.0, np.float32))
    with pytest.raises(DataError, match=r"\[0, 1\] or \[-1, 1\], found \[3.0, 3.0\]"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_npz_wrong_shape_and_pickled_objects_are_refused(tmp_path):
    np.savez(tmp_path / "shape.npz", images=np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"found shape \(2, 5, 8, 8\)"):
        load_dataset(f"npz:{tmp_path / 'shape.npz'}")
    np.savez(tmp_path / "obj.npz", images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot be read"):
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(DataError, match="idx:DIR, folder:DIR or npz:FILE"):
        load_dataset("imagenet")


def test_holdout_split_is_disjoint_and_seeded():
    data = load_dataset("digits")
    train_a, held_a = split_holdout(data, 0.1, seed=3)
    train_b, held_b = split_holdout(data, 0.1, seed=3)
    assert len(held_a) == 179 and len(train_a) == 1797 - 179
    assert torch.equal(held_a.images, held_b.images)
    assert not torch.equal(held_a.images, split_holdout(data, 0.1, seed=4)[1].images)
