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
    with pytest.raises(DataError, match=r"different sizes, e\.g\. .*a\.png 12x12 and .*b\.png 20x10; pass --resol"):
        load_dataset(f"folder:{tmp_path}")
    data = load_dataset(f"folder:{tmp_path}", resolution=8, channels=3)
    assert data.images.shape == (2, 3, 8, 8)


def test_folder_rgb_kept_as_rgb(tmp_path):
    _png(tmp_path / "a.png", mode="RGB", value=0)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.images.shape == (1, 3, 12, 12)
    assert data.images[0, :, 0, 0].tolist() == pytest.approx([-1.0, -1.0, 1.0])


def test_folder_unreadable_image_is_skipped_and_named(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    data = load_dataset(f"folder:{tmp_path}")
    assert len(data) == 1
    assert any("skipped 1 unreadable" in line and "broken.png" in line for line in data.report)
    (tmp_path / "good.png").write_bytes(b"broken too")
    with pytest.raises(DataError, match="none of the 2 images .* could be read"):
        load_dataset(f"folder:{tmp_path}")


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no PNG, JPEG or WebP images"):
        load_dataset(f"folder:{tmp_path}")


def _exif_rotated_jpeg(path: Path):
    """A 40x20 photo stored on its side: red left half, blue right; EXIF says turn it 90 degrees."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif, quality=95)


def test_a_folder_of_mixed_photos_becomes_one_kind_of_image(tmp_path):
    _exif_rotated_jpeg(tmp_path / "a" / "phone.jpg")
    Image.new("RGBA", (30, 30), (0, 0, 0, 0)).save(tmp_path / "a" / "clear.png")  # fully transparent
    Image.new("L", (16, 24), 90).save(tmp_path / "a" / "grey.png")
    (tmp_path / "b").mkdir()
    Image.new("P", (16, 16), 3).save(tmp_path / "b" / "palette.png")
    Image.new("RGB", (16, 16), (10, 200, 30)).save(tmp_path / "b" / "web.webp", lossless=True)
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (16, 16)).save(tmp_path / "beside.png")
    data = load_dataset(f"folder:{tmp_path}", resolution=16)
    assert data.shape == (3, 16, 16) and len(data) == 5 and data.class_names == ["a", "b"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1]  # files in name order: clear, grey, phone; palette, web
    images = data.batch(range(5))
    clear, grey, phone, _, web = (((images[i] + 1) * 127.5).round() for i in range(5))
    assert clear.min() == 255  # transparency flattened onto white
    assert torch.all(grey == 90)  # greyscale made RGB in a colour set
    # upright: red on top, blue below (JPEG: within a few levels)
    assert torch.allclose(phone[:, 1, 8], torch.tensor([255.0, 0, 0]), atol=4)
    assert torch.allclose(phone[:, 14, 8], torch.tensor([0.0, 0, 255]), atol=4)
    assert web[:, 8, 8].tolist() == [10, 200, 30]  # WebP read
    report = "\n".join(data.report)
    for words in ("5 of 7 image files loaded, at 16x16", "classes: a 3, b 2", "skipped 1 unreadable",
                  "broken.jpg", "skipped 1 beside the class folders", "turned upright by their EXIF",
                  "flattened onto white", "palette", "centre-cropped", "channels: 3"):
        assert words in report


def test_channels_follow_the_whole_set_not_the_first_file(tmp_path):
    Image.new("L", (8, 8), 50).save(tmp_path / "0-grey.png")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "1-red.png")
    assert load_dataset(f"folder:{tmp_path}").shape == (3, 8, 8)
    (tmp_path / "1-red.png").unlink()
    Image.new("RGB", (8, 8), (70, 70, 70)).save(tmp_path / "1-grey-rgb.png")  # RGB without colour
    data = load_dataset(f"folder:{tmp_path}")
    assert data.shape == (1, 8, 8) and any("channels: 1 (greyscale: 0 of 2" in line for line in data.report)


def test_a_folder_is_decoded_once_and_read_by_memory_map(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", value=40 * i)
    first = load_dataset(f"folder:{tmp_path}")
    again = load_dataset(f"folder:{tmp_path}")
    assert isinstance(again.pixels, np.memmap) and again.pixels.dtype == np.uint8
    assert any("decoded before" in line for line in again.report)
    assert torch.equal(first.images, again.images)
    _png(tmp_path / "1.png", value=250)  # a changed file: decoded anew
    changed = load_dataset(f"folder:{tmp_path}")
    assert not any("decoded before" in line for line in changed.report)
    assert changed.images[1, 0, 0, 0] == pytest.approx(250 / 127.5 - 1)


def test_large_folders_are_decoded_by_worker_processes_with_the_same_result(tmp_path, monkeypatch):
    from training import folders

    count = folders.PARALLEL_FROM + 10
    for i in range(count):
        _png(tmp_path / f"{i:04d}.png", size=(6, 6), value=i % 256)
    parallel = load_dataset(f"folder:{tmp_path}")
    monkeypatch.setattr(folders, "PARALLEL_FROM", 10**9)
    monkeypatch.setenv("GANSERVE_CACHE", str(tmp_path / "serial-cache"))
    serial = load_dataset(f"folder:{tmp_path}")
    assert len(parallel) == count and torch.equal(parallel.images, serial.images)


def test_batches_are_the_stored_pixels_as_floats_and_subsets_share_them(idx_dir):
    data = load_dataset(f"idx:{idx_dir}")
    assert data.pixels.dtype == np.uint8
    index = [5, 3, 3, 39]
    expected = torch.from_numpy(data.pixels[index].astype(np.float32) / 127.5 - 1.0)
    assert torch.equal(data.batch(index), expected)
    train, held = split_holdout(data, 0.25, seed=0)
    assert train.pixels is data.pixels and len(train) + len(held) == 40
    assert torch.equal(held.batch([0]), data.batch([held.rows[0]]))


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
