"""How `ganserve sample` lays its images out on disk, one class per kind of layout:

  png       one file per seed (seed00000042.png), written a batch at a time
  npz, tar  parts of up to `part_size` images, each written whole (images uint8 [N,H,W,C],
            seeds and labels; or a tar of the parts' PNGs)

Each says which writes a job still needs (`writes`), which files a job would write (`names`),
the bytes a manifest line's sha256 is of (`stored`), and which seeds count as done. The sampler
(`sampler.py`) is the same loop for every format. Every image gets a manifest line
{seed, label, file, sha256}; sha256 is of the PNG bytes (png, tar) or of the raw pixels (npz).
The writers run in worker processes, so they are plain module-level functions.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from ..formats.files import write_atomically
from ..formats.images import seed_file_name
from ..formats.png import encode_pngs

Positions = list[int]  # indices into a job's seeds


class SeedFiles:
    """png: a file per seed; a seed is done once its own file hashes right."""

    def writes(self, job, done: set[int]) -> list[tuple[Path, Positions]]:
        """(folder, positions) per engine batch, for the seeds not done."""
        todo = [i for i, seed in enumerate(job.seeds) if seed not in done]
        return [(job.out, todo[start:start + job.batch_size]) for start in range(0, len(todo), job.batch_size)]

    def names(self, job) -> set[str]:
        return {seed_file_name(seed) for seed in job.seeds}

    def stored(self, path: Path, seed: int, cache: dict) -> bytes | None:
        return path.read_bytes() if path.is_file() else None

    def done(self, job, valid: set[int]) -> set[int]:
        return valid


class Parts:
    """npz and tar: parts of part_size images, rewritten whole unless every seed of a part is
    done, so a part file is always complete."""

    def __init__(self, suffix: str):
        self.suffix = suffix

    def parts(self, job) -> list[tuple[str, Positions]]:
        index, count = job.shard
        shard = "" if count == 1 else f"-shard{index:05d}"
        return [(f"part{shard}-{part:05d}.{self.suffix}", list(range(start, min(start + job.part_size,
                                                                                 len(job.seeds)))))
                for part, start in enumerate(range(0, len(job.seeds), job.part_size))]

    def writes(self, job, done: set[int]) -> list[tuple[Path, Positions]]:
        return [(job.out / name, positions) for name, positions in self.parts(job)
                if not all(job.seeds[i] in done for i in positions)]

    def names(self, job) -> set[str]:
        return {name for name, _ in self.parts(job)}

    def stored(self, path: Path, seed: int, cache: dict) -> bytes | None:
        if str(path) not in cache:
            cache[str(path)] = READERS[self.suffix](path)
        return cache[str(path)].get(seed)

    def done(self, job, valid: set[int]) -> set[int]:
        """Only the seeds of parts whose every seed is valid: the others are written again."""
        return {job.seeds[i] for _, positions in self.parts(job) if all(job.seeds[i] in valid for i in positions)
                for i in positions}


LAYOUTS = {"png": SeedFiles(), "npz": Parts("npz"), "tar": Parts("tar")}
FORMATS = tuple(LAYOUTS)


# --- writers: run in worker processes; each returns the manifest lines of what it wrote -------

def write_pngs(folder: Path, seeds, labels, images) -> list[dict]:
    # Written in place, not through a temp file and a rename: the rename doubled the file
    # system's work per image. The manifest is the record of what is complete (its line comes
    # after the file), and --resume re-hashes every listed file, so a file cut short by a
    # crash is never counted and is written again.
    lines = []
    for i, (seed, data) in enumerate(zip(seeds, encode_pngs(images))):
        name = seed_file_name(seed)
        (folder / name).write_bytes(data)
        lines.append(manifest_line(seed, labels, i, name, data))
    return lines


def write_npz(path: Path, seeds, labels, images) -> list[dict]:
    buffer = io.BytesIO()
    extra = {"labels": np.asarray(labels, np.int64)} if labels else {}
    np.savez(buffer, images=images, seeds=np.asarray(seeds, np.int64), **extra)
    write_atomically(path, buffer.getvalue())
    return [manifest_line(seed, labels, i, path.name, image.tobytes())
            for i, (seed, image) in enumerate(zip(seeds, images))]


def write_tar(path: Path, seeds, labels, images) -> list[dict]:
    buffer, lines = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for i, (seed, data) in enumerate(zip(seeds, encode_pngs(images))):
            info = tarfile.TarInfo(seed_file_name(seed))
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
            lines.append(manifest_line(seed, labels, i, path.name, data))
    write_atomically(path, buffer.getvalue())
    return lines


WRITERS = {"png": write_pngs, "npz": write_npz, "tar": write_tar}


def manifest_line(seed: int, labels, index: int, file: str, data: bytes) -> dict:
    return {"seed": seed, "label": labels[index] if labels else None, "file": file,
            "sha256": hashlib.sha256(data).hexdigest()}


# --- readers: seed -> the bytes that were hashed, for one part (empty if unreadable) ----------

def read_npz(path: Path) -> dict[int, bytes]:
    try:
        with np.load(path, allow_pickle=False) as part:
            return {int(s): image.tobytes() for s, image in zip(part["seeds"], part["images"])}
    except (OSError, ValueError, KeyError):
        return {}


def read_tar(path: Path) -> dict[int, bytes]:
    try:
        with tarfile.open(path) as archive:
            return {int(member.name.removeprefix("seed").removesuffix(".png")): archive.extractfile(member).read()
                    for member in archive.getmembers()}
    except (OSError, ValueError, KeyError, tarfile.TarError):
        return {}


READERS = {"npz": read_npz, "tar": read_tar}
