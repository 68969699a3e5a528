"""Data sources. Every source yields the same thing: images (N, C, H, W), handed out in
batches as float32 in [-1, 1], plus integer labels and class names when the source has them.

Pixels stay as the source stored them: uint8 for 8-bit sources (a quarter of the floats'
memory; a folder's are a memory map of its decoded cache, training/folders.py), float32 for
the rest. A batch is turned into floats when it is taken, with the one pixel mapping
(serving/formats/pixels.py), so batches are the values they always were.

    >>> data = load_dataset("digits")
    >>> data.batch(range(4)).shape, data.num_classes
    (torch.Size([4, 1, 8, 8]), 10)
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from serving.formats.files import cache_dir
from serving.formats.pixels import from_levels

from .errors import DataError


@dataclass
class ImageDataset:
    pixels: np.ndarray  # (M, C, H, W): uint8 levels, or float32 in [-1, 1]; possibly a memory map
    labels: torch.Tensor | None  # (N,) int64 for this set's images, or None for unlabelled data
    class_names: list[str] | None
    source: str  # the --data value it came from
    rows: np.ndarray | None = None  # this set's rows of `pixels` (a subset shares its parent's pixels)
    report: list[str] = field(default_factory=list)  # what loading did (folders: converted, skipped)

    def __len__(self) -> int:
        return len(self.pixels) if self.rows is None else len(self.rows)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        _, c, h, w = self.pixels.shape
        return c, h, w

    def batch(self, indices) -> torch.Tensor:
        """Images `indices` (of this set) as float32 (n, C, H, W) in [-1, 1]."""
        chosen = np.asarray(indices, dtype=np.int64)
        rows = chosen if self.rows is None else self.rows[chosen]
        if len(rows) > 1 and np.all(np.diff(rows) == 1):  # a run of rows: a slice reads a memory map in order
            picked = np.array(self.pixels[rows[0]:rows[-1] + 1])  # a copy: the map is read-only
        else:
            picked = self.pixels[rows]
        images = torch.from_numpy(np.ascontiguousarray(picked))  # fancy indexing has copied already
        return from_levels(images.float()) if images.dtype == torch.uint8 else images

    @property
    def images(self) -> torch.Tensor:
        """The whole set as floats: for small sets (tests, evaluation); training takes batches."""
        return self.batch(np.arange(len(self)))

    def fingerprint(self) -> bytes:
        """Bytes that identify these images (and labels), for caches keyed by the data."""
        digest = hashlib.sha256(self.pixels.dtype.str.encode() + str(self.pixels.shape).encode())
        for start in range(0, len(self), 4096):  # in pieces: a memory map is never read whole
            digest.update(np.ascontiguousarray(self.pixels[self._rows(start, 4096)]).tobytes())
        if self.labels is not None:
            digest.update(self.labels.numpy().tobytes())
        return digest.digest()

    def _rows(self, start: int, count: int) -> np.ndarray:
        rows = np.arange(start, min(start + count, len(self)))
        return rows if self.rows is None else self.rows[rows]

    def subset(self, indices) -> ImageDataset:
        chosen = np.asarray(indices, dtype=np.int64)
        labels = self.labels[torch.as_tensor(chosen)] if self.labels is not None else None
        rows = chosen if self.rows is None else self.rows[chosen]
        return ImageDataset(self.pixels, labels, self.class_names, self.source, rows, self.report)


def load_dataset(spec: str, resolution: int | None = None, channels: int | None = None) -> ImageDataset:
    """Load a data source by its --data spec, then bring it to `resolution` and `channels`."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        data = _load_digits()
    elif kind in MNIST_LIKE and not arg:
        data = _load_idx_dir(_download_mnist_like(kind), spec)
    elif kind == "idx" and arg:
        data = _load_idx_dir(Path(arg), spec)
    elif kind == "folder" and arg:
        return _load_folder(Path(arg), spec, resolution, channels)  # decoded at the size and channels asked
    elif kind == "npz" and arg:
        data = _load_npz(Path(arg), spec)
    else:
        raise DataError(
            f"--data {spec!r} is not a known source; use digits, mnist, fashion-mnist, "
            "idx:DIR, folder:DIR or npz:FILE")
    if len(data) == 0:
        raise DataError(f"--data {spec!r} holds no images")
    found = data.shape
    data = _reshaped(data, resolution, channels, spec)
    summary = f"{spec}: {len(data)} images, {'x'.join(map(str, found))} (channels x height x width)"
    if data.shape != found:
        summary += f", brought to {'x'.join(map(str, data.shape))}"
    if data.class_names or data.labels is not None:
        summary += f", {data.num_classes} classes"
    return dataclasses.replace(data, report=[summary])


def _reshaped(data: ImageDataset, resolution: int | None, channels: int | None, spec: str) -> ImageDataset:
    """The set at `resolution` and `channels`: as it is when it already is (uint8 stays uint8),
    else resized (antialiased bilinear) and converted, as floats."""
    have_channels, height, width = data.shape
    if (resolution is None or height == width == resolution) and channels in (None, have_channels):
        return dataclasses.replace(data, source=spec)
    images = _to_channels(_to_resolution(data.images, resolution), channels)
    return ImageDataset(images.numpy(), data.labels, data.class_names, spec)


def split_holdout(data: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Split off a fixed, seed-determined fraction of images (train, held out)."""
    count = int(len(data) * fraction)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).numpy()
    return data.subset(order[count:]), data.subset(order[:count])


# --- the sources --------------------------------------------------------------------------

def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[:, None]  # 17 levels: kept as floats
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageDataset(images, labels, [str(c) for c in bunch.target_names], "digits")


# (file name, md5 as published by the data sets' authors)
MNIST_LIKE = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")]),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")]),
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _download_mnist_like(name: str) -> Path:
    base_url, files = MNIST_LIKE[name]
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, md5 in files:
        target = folder / file_name
        if target.exists() and _md5(target) == md5:
            continue
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(base_url + file_name, timeout=30) as response, open(partial, "wb") as out:
                out.write(response.read())
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {name} file {file_name} from {base_url} ({error}); on a machine "
                f"without internet, copy the IDX files into a folder and use --data idx:DIR") from None
        if _md5(partial) != md5:
            partial.unlink()
            raise DataError(f"{name} file {file_name} failed its checksum (expected md5 {md5}); try again")
        partial.replace(target)
    return folder


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _load_idx_dir(folder: Path, spec: str) -> ImageDataset:
    if not folder.is_dir():
        raise DataError(f"--data {spec!r}: {folder} is not a folder")
    image_files = sorted(p for p in folder.iterdir() if "images-idx3-ubyte" in p.name)
    if not image_files:
        raise DataError(f"--data {spec!r}: no '*-images-idx3-ubyte[.gz]' file in {folder}")
    train_files = [p for p in image_files if p.name.startswith("train")]
    image_files = train_files or image_files  # prefer the training split when both are there
    images, labels = [], []
    for image_file in image_files:
        array = _read_idx(image_file)
        if array.ndim != 3:
            raise DataError(f"{image_file}: expected an IDX image array (N, H, W), found shape {array.shape}")
        images.append(array)
        label_file = image_file.with_name(image_file.name.replace("images-idx3", "labels-idx1"))
        if label_file.exists():
            label_array = _read_idx(label_file)
            if label_array.shape != (len(array),):
                raise DataError(f"{label_file}: expected {len(array)} labels, found shape {label_array.shape}")
            labels.append(label_array)
    if len({a.shape[1:] for a in images}) > 1:
        raise DataError(f"--data {spec!r}: image files in {folder} have different image sizes")
    stacked = np.concatenate(images)[:, None]  # (N, 1, H, W) uint8
    if len(labels) != len(images):
        return ImageDataset(stacked, None, None, spec)
    label_tensor = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    names = FASHION_CLASSES if spec == "fashion-mnist" else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return ImageDataset(stacked, label_tensor, names, spec)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header says {dims} ({expected} bytes), file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_folder(folder: Path, spec: str, resolution: int | None, channels: int | None) -> ImageDataset:
    from serving.runtime.cpus import available_cpus

    from . import folders

    if not folder.is_dir():
        raise DataError(f"--data {spec!r}: {folder} is not a folder")
    try:
        loaded = folders.load(folder, resolution, channels, cache_dir() / "folders", available_cpus())
    except folders.FolderError as error:
        raise DataError(f"--data {spec!r}: {error}") from None
    labels = torch.from_numpy(loaded.labels) if loaded.labels is not None else None
    return ImageDataset(loaded.pixels, labels, loaded.class_names, spec, report=loaded.report)


def _load_npz(path: Path, spec: str) -> ImageDataset:
    if not path.is_file():
        raise DataError(f"--data {spec!r}: {path} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle user files
        arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: cannot be read as an .npz of arrays ({error})") from None
    if "images" in arrays:
        images = arrays["images"]
    elif len(arrays) >= 1:
        images = next(iter(arrays.values()))
    else:
        raise DataError(f"{path}: holds no arrays; save one named 'images'")
    images = _npz_images_to_nchw(images, path)
    labels = arrays.get("labels")
    if labels is None:
        return ImageDataset(images, None, None, spec)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError(f"{path}: 'labels' must be {len(images)} non-negative integers, "
                        f"found shape {labels.shape} dtype {labels.dtype}")
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(images, label_tensor, [str(i) for i in range(int(label_tensor.max()) + 1)], spec)


def _npz_images_to_nchw(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"{path}: 'images' must be (N, H, W), (N, H, W, C) or (N, C, H, W) "
                        f"with C 1 or 3; found shape {images.shape}")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: 'images' must be uint8 or float, found dtype {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1.0 or high > 1.0:
        raise DataError(f"{path}: float images must lie in [0, 1] or [-1, 1], found [{low}, {high}]")
    scaled = images if low < 0 else images * 2.0 - 1.0  # [0, 1] unless negative values say [-1, 1]
    return np.ascontiguousarray(scaled.astype(np.float32))


# --- shaping ------------------------------------------------------------------------------

def _to_resolution(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    _, _, height, width = images.shape
    if resolution is None or (height == width == resolution):
        return images
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images[:, :, top:top + side, left:left + side]
    resized = F.interpolate(square, size=(resolution, resolution), mode="bilinear",
                            antialias=side > resolution, align_corners=False)
    return resized.clamp(-1.0, 1.0)


def _to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    have = images.shape[1]
    if channels is None or channels == have:
        return images
    if channels == 3:
        return images.repeat(1, 3, 1, 1)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601, as Pillow's "L"
    return (images * luma).sum(dim=1, keepdim=True)
