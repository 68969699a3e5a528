"""Image bytes in and out: PNGs of generated images (`png.py`, the same bytes over HTTP and
from the batch CLI), grids and interpolation strips or GIFs, the file names images are saved
under, and decoding of uploaded images with bounded size."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ServingError
from .png import decode_plain, encode_pngs

MAX_UPLOAD_PIXELS = 4096 * 4096  # decoded pixels per uploaded image; bigger uploads are refused
UPLOAD_FORMATS = ("PNG", "JPEG")
# How other image files start (WebP: "WEBP" at byte 8), for a refusal that names the format.
OTHER_FORMATS = ((b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"WEBP", "WebP"), (b"BM", "BMP"))


def seed_file_name(seed: int) -> str:
    """seed00000042.png: the same name in zips, the batch sampler and its manifest."""
    return f"seed{seed:08d}.png"


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, C) -> PNG bytes, with no metadata, so bytes depend on pixels alone."""
    return encode_pngs(image[None])[0]


def tile(images: np.ndarray, columns: int | None = None, padding: int = 1) -> np.ndarray:
    """uint8 (N, H, W, C) -> one (rows*H, columns*W, C) grid, black between tiles."""
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                      dtype=np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top:top + height, left:left + width] = image
    return canvas


def encode_frames(frames: np.ndarray, fmt: str, frame_ms: int) -> bytes:
    """An interpolation as one PNG strip (left to right) or a looping animated GIF."""
    if fmt == "png":
        return encode_png(tile(frames, columns=len(frames)))
    pictures = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()


def decode_image(data: bytes, name: str, shape: tuple[int, int, int], resize: bool,
                 resize_hint: str = "send resize=true") -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W, C) of the model's shape. Without `resize`, an image of
    another size or colour type is refused with a message that says what was expected and
    how to ask for conversion (`resize_hint`, in the caller's own terms)."""
    plain = decode_plain(data, shape)  # the common case: already the model's size and colour type
    if plain is not None:
        return plain
    height, width, channels = shape
    other = next((kind for magic, kind in OTHER_FORMATS if data.startswith(magic) or data[8:12] == magic), None)
    if other:
        raise ServingError(f"{name}: {other} images are not accepted; send PNG or JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # only the PNG and JPEG decoders: no other parser ever sees an upload
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
                if image.width * image.height > MAX_UPLOAD_PIXELS:
                    raise ServingError(f"{name}: {image.width}x{image.height}: the image is too large; "
                                       f"at most {MAX_UPLOAD_PIXELS} pixels per image")
                image.load()
                size_ok = image.size == (width, height)
                mode_ok = image.mode == ("L" if channels == 1 else "RGB")
                if not resize and not (size_ok and mode_ok):
                    raise ServingError(
                        f"{name}: got a {image.width}x{image.height} {image.mode} image; the model scores "
                        f"{width}x{height} {'grayscale (L)' if channels == 1 else 'RGB'} images ({resize_hint} "
                        "to convert)")
                converted = image.convert("L" if channels == 1 else "RGB")
                if not size_ok:
                    converted = converted.resize((width, height), Image.Resampling.LANCZOS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ServingError(f"{name}: the image is too large; at most {MAX_UPLOAD_PIXELS} pixels per image") from None
    except UnidentifiedImageError:  # its message names Pillow's in-memory buffer, which says nothing to a client
        if data.startswith((b"\x89PNG", b"\xff\xd8")):
            raise ServingError(f"{name}: not a readable PNG or JPEG image (truncated or damaged)") from None
        raise ServingError(f"{name}: not a PNG or JPEG image (its first bytes are {data[:8]!r})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ServingError(f"{name}: not a readable PNG or JPEG image ({error})") from None
    array = np.asarray(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array
