"""The batch PNG encoder: exact round trips through Pillow's decoder, libpng's filter choice,
file sizes next to Pillow's own encoder, and refusals that name the problem; the uploads'
decoding fast path: exact pixels, and every other file left to Pillow."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from serving.errors import ServingError
from serving.formats.png import _chunk, decode_plain, encode_pngs


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and not image.info  # no metadata: bytes depend on pixels alone
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def _pillow_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _row_filters(data: bytes, height: int) -> list[int]:
    """The filter type byte of each row, read back from the IDAT chunk."""
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    rows = zlib.decompress(data[start:start + length])
    stride = len(rows) // height
    return [rows[row * stride] for row in range(height)]


@pytest.mark.parametrize("shape", [(5, 28, 28, 1), (3, 17, 9, 3), (2, 8, 8, 4), (1, 1, 1, 1), (4, 1, 30, 3)])
def test_every_image_decodes_to_its_exact_pixels(shape):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    images[0] = np.arange(np.prod(shape[1:]), dtype=np.uint8).reshape(shape[1:])  # a structured one too
    for image, data in zip(images, encode_pngs(images), strict=True):
        np.testing.assert_array_equal(_decode(data), image)


def test_a_batch_encodes_each_image_as_it_would_alone():
    images = np.random.default_rng(1).integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)
    assert encode_pngs(images) == [encode_pngs(image[None])[0] for image in images]
    assert encode_pngs(images) == encode_pngs(images.copy())  # the same pixels, the same bytes


def test_large_batches_are_filtered_in_parts_with_the_same_bytes(monkeypatch):
    import serving.formats.png

    images = np.random.default_rng(3).integers(0, 256, (7, 6, 5, 3), dtype=np.uint8)
    whole = encode_pngs(images)
    monkeypatch.setattr(serving.formats.png, "_FILTER_BYTES", 2 * 6 * 5 * 3)  # two images per part
    assert encode_pngs(images) == whole


def test_rows_get_the_filter_that_fits_them():
    width = 64
    # a ramp along each row, shifted from row to row: predicted from the left (Sub, or Paeth)
    across = (np.arange(width)[None, :] * 3 + np.arange(16)[:, None] * 17).astype(np.uint8)
    noise = np.random.default_rng(2).integers(0, 256, (16, width), dtype=np.uint8)
    down = np.tile(noise[0], (16, 1))  # every row repeats the first: Up
    flat = np.zeros((16, width), np.uint8)  # nothing to predict: None wins the tie
    for image, allowed in ((across, {1, 4}), (flat, {0})):
        data = encode_pngs(image[None, :, :, None])[0]
        assert set(_row_filters(data, image.shape[0])) <= allowed
    assert set(_row_filters(encode_pngs(down[None, :, :, None])[0], 16)[1:]) == {2}
    # Paeth takes the rows whose first pixel is better predicted from above; the others are Sub
    assert 1 in _row_filters(encode_pngs(across[None, :, :, None])[0], 16)
    # the first row has nothing above it, so it is not filtered with Up
    assert _row_filters(encode_pngs(down[None, :, :, None])[0], 16)[0] != 2
    assert len(set(_row_filters(encode_pngs(noise[None, :, :, None])[0], 16))) >= 2


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_photos_compress_about_as_well_as_with_pillow(name):
    photo = np.asarray(Image.fromarray(load_sample_image(name)).resize((64, 64), Image.Resampling.LANCZOS))
    data = encode_pngs(photo[None])[0]
    np.testing.assert_array_equal(_decode(data), photo)
    assert set(_row_filters(data, 64)) >= {1, 2, 3, 4}  # Sub, Up, Average and Paeth all decode right
    ours, pillows = len(data), len(_pillow_png(photo))
    assert ours < 0.8 * photo.size  # the filters found the structure: far below the raw bytes
    assert ours <= 1.05 * pillows, (ours, pillows)


def test_digits_compress_about_as_well_as_with_pillow():
    from sklearn.datasets import load_digits

    digits = (load_digits().images[:64] * 15).astype(np.uint8)  # 8x8, 0..240
    images = np.stack([np.asarray(Image.fromarray(d).resize((28, 28), Image.Resampling.BILINEAR))
                       for d in digits])[..., None]  # smooth strokes on black, like MNIST
    ours = sum(len(data) for data in encode_pngs(images))
    pillows = sum(len(_pillow_png(image)) for image in images)
    assert ours <= 1.08 * pillows, (ours, pillows)  # run-length deflate: a few % for speed


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 4, 4, 1), np.float32), "float32"),
    (np.zeros((4, 4, 1), np.uint8), r"\(4, 4, 1\)"),
    (np.zeros((1, 4, 4, 2), np.uint8), r"C in 1, 3 or 4"),
])
def test_wrong_arrays_are_refused_with_what_was_expected(images, message):
    with pytest.raises(ValueError, match=message):
        encode_pngs(images)


# --- the upload fast path: decode_plain ------------------------------------------------------

def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """The PNG with one more chunk right after IHDR (8 + 25 bytes in)."""
    return data[:33] + _chunk(kind, body) + data[33:]


@pytest.mark.parametrize("shape", [(28, 28, 1), (17, 9, 3), (64, 64, 3), (1, 1, 1)])
def test_plain_uploads_decode_to_their_exact_pixels_from_either_encoder(shape):
    image = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] //= 7  # smoother rows too, so several filter types occur
    for data in (encode_pngs(image[None])[0], _pillow_png(image)):
        decoded = decode_plain(data, shape)
        assert decoded is not None and decoded.dtype == np.uint8 and decoded.shape == shape
        np.testing.assert_array_equal(decoded, image)


def test_anything_but_a_plain_png_of_the_shape_is_left_to_pillow():
    image = np.random.default_rng(5).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    data = encode_pngs(image[None])[0]
    grey = encode_pngs(image[None, :, :, :1])[0]
    # the same header but for its interlace byte, with a right CRC: refused by what it says
    interlaced = data[:8] + _chunk(b"IHDR", data[16:28] + b"\x01") + data[33:]
    cases = {
        "another size": decode_plain(data, (10, 12, 3)),
        "another colour type": decode_plain(grey, (12, 10, 3)),
        "RGBA": decode_plain(encode_pngs(np.dstack([image, image[:, :, :1]])[None])[0], (12, 10, 3)),
        "an RGBA model": decode_plain(data, (12, 10, 4)),
        "interlaced": decode_plain(interlaced, (12, 10, 3)),
        "a text chunk": decode_plain(_with_chunk(data, b"tEXt", b"Comment\x00hi"), (12, 10, 3)),
        "a gamma chunk": decode_plain(_with_chunk(data, b"gAMA", (45455).to_bytes(4, "big")), (12, 10, 3)),
        "bytes after IEND": decode_plain(data + b"\x00", (12, 10, 3)),
        "no IEND": decode_plain(data[:-12], (12, 10, 3)),
        "cut short": decode_plain(data[: len(data) // 2], (12, 10, 3)),
        "JPEG": decode_plain(b"\xff\xd8\xff\xe0" + data[4:], (12, 10, 3)),
    }
    assert {name: result for name, result in cases.items() if result is not None} == {}


def test_a_damaged_upload_gets_the_same_answer_with_or_without_the_fast_path(monkeypatch):
    """Every single-byte change of a valid upload: the same pixels or the same refusal as the
    general path through Pillow, never an image Pillow would not give."""
    import serving.formats.images as images

    image = np.random.default_rng(6).integers(0, 256, (8, 8, 1), dtype=np.uint8)
    data = encode_pngs(image[None])[0]
    variants = [data] + [data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:] for i in range(len(data))]
    variants += [data[:i] for i in range(0, len(data), 7)]

    def outcome(blob: bytes):
        try:
            return images.decode_image(blob, "images[0]", (8, 8, 1), resize=False).tobytes()
        except ServingError as error:
            return str(error)

    fast = [outcome(blob) for blob in variants]
    monkeypatch.setattr(images, "decode_plain", lambda data, shape: None)
    assert fast == [outcome(blob) for blob in variants]
    assert fast.count(image.tobytes()) >= 1 and any(isinstance(o, str) for o in fast)
