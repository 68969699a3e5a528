"""`--data folder:DIR`: a folder of photos into uint8 pixels, and an account of what was done.

Class sub-folders become labels (images directly beside them have no class: skipped, and
said). Every image, whatever its file, becomes the same kind of picture:
- PNG, JPEG and WebP are read; a file that cannot be read is skipped with a warning that
  names it, and counted;
- EXIF orientation is applied (a phone's portrait photo is upright);
- transparency is flattened onto white; palette, CMYK and 16-bit images become 8-bit RGB or
  greyscale;
- with --resolution, each image is centre-cropped to a square and resized with an
  antialiasing (Lanczos) filter; without it, all images must already share one size;
- without --channels, the set is RGB if any image has colour, else greyscale.
The images are decoded once, in worker processes, into a uint8 array on disk (the cache
folder, keyed by the files' names, sizes and dates and the options), which training reads by
memory map: a set far larger than memory trains the same way, with the same batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
LOADER_VERSION = 1  # part of the cache key: a change to the decoding makes a new cache
PARALLEL_FROM = 256  # images: below this, decoding in this process is quicker than starting workers
CHUNK = 64  # images per task sent to a worker


class FolderError(ValueError):
    """A folder that cannot become a data set (no images, or images that disagree)."""


@dataclass
class Decoded:
    """What one file became: its pixels (H, W, 3 or 1) uint8, or why it was skipped."""

    pixels: np.ndarray | None
    error: str | None = None
    notes: tuple[str, ...] = ()  # conversions done: "rotated", "alpha", "palette", "cropped", ...
    colour: bool = False  # any pixel whose channels differ
    size: tuple[int, int] = (0, 0)  # (width, height) as found, after EXIF orientation


@dataclass
class FolderSet:
    pixels: np.ndarray  # (N, C, H, W) uint8, a memory map of the cache file
    labels: np.ndarray | None
    class_names: list[str] | None
    report: list[str] = field(default_factory=list)


def scan(folder: Path) -> tuple[list[tuple[Path, int | None]], list[str] | None, list[Path]]:
    """(image files with their class index, class names, images beside the class folders)."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not class_dirs:
        return [(path, None) for path in loose], None, []
    entries = [(path, label) for label, d in enumerate(class_dirs) for path in sorted(d.iterdir())
               if path.is_file() and path.suffix.lower() in SUFFIXES]
    return entries, [d.name for d in class_dirs], loose


def decode(path: str, resolution: int | None, channels: int | None) -> Decoded:
    """One file into uint8 pixels at `resolution` (centre crop + Lanczos), RGB or greyscale."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as original:
                original.load()
                image = ImageOps.exif_transpose(original)
                if image is not original and original.getexif().get(0x0112, 1) != 1:
                    notes.append("rotated")
                image = _eight_bit(image, notes)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as error:
        return Decoded(None, f"{type(error).__name__}: {str(error).splitlines()[0][:120]}")
    size = image.size
    if resolution is not None:
        width, height = image.size
        if width != height:
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            notes.append("cropped")
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
            notes.append("resized")
    if channels == 1:
        pixels = np.asarray(image.convert("L"))[:, :, None]
        return Decoded(pixels, notes=tuple(notes), size=size)
    rgb = np.asarray(image.convert("RGB"))
    colour = bool((rgb[:, :, 0] != rgb[:, :, 1]).any() or (rgb[:, :, 1] != rgb[:, :, 2]).any())
    return Decoded(rgb, notes=tuple(notes), colour=colour, size=size)


def _eight_bit(image, notes: list[str]):
    """Any mode into 8-bit L or RGB: alpha flattened onto white, palettes and CMYK converted."""
    from PIL import Image

    if image.mode == "P":
        notes.append("palette")
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        notes.append("alpha")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        notes.append("16-bit")
        levels = np.asarray(image, dtype=np.uint32) >> 8 if image.mode != "I" else \
            np.clip(np.asarray(image), 0, 65535).astype(np.uint32) >> 8
        return Image.fromarray(levels.astype(np.uint8))
    if image.mode in ("1", "L"):
        return image.convert("L")
    if image.mode != "RGB":
        notes.append(image.mode.lower())  # CMYK, YCbCr, F, ...
        return image.convert("RGB")
    return image


def _decode_chunk(paths: list[str], resolution: int | None, channels: int | None) -> list[Decoded]:
    return [decode(path, resolution, channels) for path in paths]


def load(folder: Path, resolution: int | None, channels: int | None, cache: Path, workers: int) -> FolderSet:
    """The folder as a FolderSet, decoded into `cache` on the first call, read from it after."""
    entries, class_names, loose = scan(folder)
    if not entries:
        raise FolderError(f"no PNG, JPEG or WebP images in {folder}")
    key = _key(folder, entries, resolution, channels)
    array_path, info_path = cache / f"{key}.npy", cache / f"{key}.json"
    if not (array_path.is_file() and info_path.is_file()):
        cache.mkdir(parents=True, exist_ok=True)
        report, labels = _decode_into(array_path, folder, entries, class_names, loose, resolution, channels, workers)
        info_path.write_text(json.dumps({"labels": labels, "class_names": class_names, "report": report}))
    else:
        report = [*json.loads(info_path.read_text())["report"], f"  (decoded before: read from {array_path})"]
    info = json.loads(info_path.read_text())
    labels = np.asarray(info["labels"], np.int64) if info["labels"] is not None else None
    return FolderSet(np.load(array_path, mmap_mode="r"), labels, info["class_names"], report)


def _decode_into(array_path: Path, folder: Path, entries, class_names, loose, resolution, channels,
                 workers: int) -> tuple[list[str], list[int] | None]:
    """Decode every file, its pixels written to disk as they come (memory stays at a chunk's),
    then keep the readable rows, with the set's channels."""
    paths = [str(path) for path, _ in entries]
    staging = array_path.with_suffix(".all.npy")
    kept: list[Decoded] = []  # per file, without its pixels once written
    pixels = None
    for start, part in _decode_all(paths, resolution, channels, workers):
        for offset, item in enumerate(part):
            index = start + offset
            if item.pixels is not None:
                if pixels is None:  # the first readable image fixes the size (all must share it)
                    height, width = item.pixels.shape[:2]
                    pixels = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8,
                                                       shape=(len(paths), 1 if channels == 1 else 3, height, width))
                if item.pixels.shape[:2] != pixels.shape[2:]:
                    first = next(i for i, d in enumerate(kept) if d.error is None)
                    raise FolderError(f"images of different sizes, e.g. {entries[first][0]} {_size(kept[first])} and "
                                      f"{entries[index][0]} {_size(item)}; pass --resolution to crop each to a square "
                                      "and resize it (antialiased)")
                pixels[index] = item.pixels.transpose(2, 0, 1)
            kept.append(Decoded(None, item.error, item.notes, item.colour, item.pixels.shape[1::-1]
                                if item.pixels is not None else (0, 0)))
    good = [i for i, d in enumerate(kept) if d.error is None]
    if not good:
        raise FolderError(f"none of the {len(entries)} images in {folder} could be read, e.g. "
                          f"{entries[0][0]}: {kept[0].error}")
    colour = sum(kept[i].colour for i in good)
    final_channels = channels or (3 if colour else 1)
    final = np.lib.format.open_memmap(array_path.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8,
                                      shape=(len(good), final_channels, *pixels.shape[2:]))
    for start in range(0, len(good), 1024):  # copied in pieces: never the whole set in memory
        rows = good[start:start + 1024]
        final[start:start + len(rows)] = pixels[rows][:, :final_channels]
    final.flush()
    del final, pixels
    os.replace(array_path.with_suffix(".tmp.npy"), array_path)
    staging.unlink()
    labels = [entries[i][1] for i in good] if class_names else None
    return _report(folder, entries, kept, good, class_names, loose, resolution, channels, final_channels,
                   colour), labels


def _decode_all(paths: list[str], resolution: int | None, channels: int | None, workers: int):
    """(index of the first file, its chunk decoded), in file order."""
    chunks = [(i, paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    if len(paths) < PARALLEL_FROM or workers <= 1:
        for start, chunk in chunks:
            yield start, _decode_chunk(chunk, resolution, channels)
        return
    # spawn, not fork: the training process has started torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        parts = pool.map(_decode_chunk, [c for _, c in chunks], [resolution] * len(chunks), [channels] * len(chunks))
        yield from zip((start for start, _ in chunks), parts)


def _key(folder: Path, entries, resolution: int | None, channels: int | None) -> str:
    digest = hashlib.sha256(f"{LOADER_VERSION} {folder.resolve()} {resolution} {channels}".encode())
    for path, label in entries:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)} {label} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _size(decoded: Decoded) -> str:
    width, height = decoded.size if decoded.pixels is None else decoded.pixels.shape[1::-1]
    return f"{width}x{height}"


NOTE_WORDS = {"rotated": "turned upright by their EXIF orientation", "alpha": "had transparency (flattened onto "
              "white)", "palette": "were palette images (converted)", "16-bit": "were 16-bit (scaled to 8)",
              "cropped": "centre-cropped to a square", "resized": "resized (Lanczos, antialiased)"}


def _report(folder, entries, decoded, good, class_names, loose, resolution, channels, final_channels,
            colour) -> list[str]:
    """The summary `ganserve train` prints: what was loaded, converted and skipped, and why."""
    lines = [f"{folder}: {len(good)} of {len(entries) + len(loose)} image files loaded"
             + (f", at {resolution}x{resolution}" if resolution else "")]
    if class_names:
        counts = np.bincount([entries[i][1] for i in good], minlength=len(class_names))
        lines.append(f"  classes: {', '.join(f'{name} {count}' for name, count in zip(class_names, counts))}")
    bad = [(entries[i][0], d.error) for i, d in enumerate(decoded) if d.error is not None]
    if bad:
        shown = "; ".join(f"{path}: {error}" for path, error in bad[:5])
        lines.append(f"  skipped {len(bad)} unreadable: {shown}" + (" ..." if len(bad) > 5 else ""))
    if loose:
        lines.append(f"  skipped {len(loose)} beside the class folders (no class), e.g. {loose[0]}; move them into "
                     "a class folder")
    notes: dict[str, int] = {}
    for i in good:
        for note in decoded[i].notes:
            notes[note] = notes.get(note, 0) + 1
    for note, count in notes.items():
        lines.append(f"  {count} {NOTE_WORDS.get(note, f'were {note} (converted)')}")
    if channels is None:
        grey = len(good) - colour
        lines.append(f"  channels: {final_channels} ({'RGB' if final_channels == 3 else 'greyscale'}: "
                     f"{colour} of {len(good)} images have colour"
                     + (f"; {grey} greyscale images made RGB" if final_channels == 3 and grey else "")
                     + "; --channels sets it)")
    return lines
