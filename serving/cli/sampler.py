"""The batch sampler behind `ganserve sample`: many seeds to files, resumable and shardable.

The engine runs in this process; PNG encoding and file writing run in a pool of worker
processes, overlapped with the next engine run, so encoding is not the bottleneck. The output
formats (png files, npz or tar parts) and their manifests: `sample_formats.py`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import multiprocessing
import re
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..engine import Engine
from ..errors import ServingError
from ..formats.files import write_atomically
from ..requests import GenerateRequest, Mode, Plain
from ..runtime.cpus import available_cpus
from .sample_formats import FORMATS, LAYOUTS, WRITERS


@dataclass(frozen=True)
class SampleJob:
    seeds: list[int]  # this shard's seeds, in order
    out: Path
    format: str = "png"
    labels: list[int] | None = None  # cycled over the seeds by position; None: the engine's default per seed
    truncation: float | None = None
    max_train_similarity: float | None = None  # redraw near-copies of training images (sampling/memorisation.py)
    mode: Mode = Plain()  # plain, best-of-K or rejection sampling (serving/requests.py)
    batch_size: int = 256
    part_size: int = 10_000
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    force: bool = False  # write over this job's earlier output (and restart its manifest)
    workers: int = 0  # encoding processes; 0: one per CPU core

    @property
    def manifest_path(self) -> Path:
        index, count = self.shard
        name = "manifest.jsonl" if count == 1 else f"manifest-{index:05d}-of-{count:05d}.jsonl"
        return self.out / name

    @property
    def layout(self):
        """How this job's format lies on disk (sample_formats.py)."""
        return LAYOUTS[self.format]


def run_sample(engine: Engine, job: SampleJob, progress: bool = True) -> dict:
    """Write every seed of the job; returns counts and the images/s achieved."""
    if job.format not in FORMATS:
        raise ServingError(f"--format: {job.format!r} is not allowed; use png, npz or tar")
    if not (job.resume or job.force):
        _refuse_earlier_output(job)
    settings = _settings(engine, job)
    if not job.force:
        _refuse_other_settings(job, settings)
    job.out.mkdir(parents=True, exist_ok=True)
    write_atomically(job.out / SETTINGS_FILE, (json.dumps(settings, indent=1) + "\n").encode())
    done = job.layout.done(job, _completed(job)) if job.resume else set()
    if not job.resume:
        job.manifest_path.unlink(missing_ok=True)
    else:
        _rewrite_manifest(job, done)
    writes = job.layout.writes(job, done)
    total = sum(len(positions) for _, positions in writes)
    started = time.perf_counter()
    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True)
    workers = job.workers or available_cpus()
    try:
        _write_all(engine, job, writes, workers, bar)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise ServingError(f"--out {job.out}: no space left on the device; free some space and run the same "
                           "command with --resume to finish (what was written is kept)") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    return {"written": total, "skipped": len(done), "seconds": round(seconds, 3),
            "images_per_s": round(total / seconds, 1) if seconds else None, "manifest": str(job.manifest_path)}


def _write_all(engine: Engine, job: SampleJob, writes, workers: int, bar) -> None:
    with _encoding_pool(workers) as pool, open(job.manifest_path, "a") as manifest:
        in_flight: list[Future] = []
        for target, positions in writes:
            seeds = [job.seeds[i] for i in positions]
            labels = _labels_for(job, positions)
            images = _generate(engine, seeds, labels, job)
            in_flight.append(pool.submit(_write, job.format, target, seeds, labels, images))
            while len(in_flight) > workers:  # keep every worker busy, no more
                _finish(in_flight.pop(0), manifest, bar)
        for future in in_flight:
            _finish(future, manifest, bar)


def _encoding_pool(workers: int) -> ProcessPoolExecutor:
    """PNG workers that ignore Ctrl-C, so only this process stops, with one line. SIGINT is
    blocked while they start, so none is hit before its initializer (the mask passes through
    the fork server to them). They come from a fork server, not a fork of this process: forked
    from a process whose engine threads may hold a lock (the allocator's, a runtime's) at that
    moment, a worker could wait on it forever."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts,
                                   mp_context=multiprocessing.get_context("forkserver"))
        for started in [pool.submit(int) for _ in range(workers)]:  # start them all now
            started.result()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a Ctrl-C that came meanwhile lands here
    return pool


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _refuse_earlier_output(job: SampleJob) -> None:
    """A fresh run into a folder that already holds this job's manifest or images would
    restart the manifest and leave the earlier images unlisted: lost work, so it is refused.
    (Shards of one job share a folder; each checks only what it would write.)"""
    if not job.out.exists():
        return
    if job.shard[1] == 1:
        found = next(iter(job.out.iterdir()), None)
    elif job.manifest_path.exists():
        found = job.manifest_path
    else:
        found = next((job.out / name for name in job.layout.names(job) if (job.out / name).exists()), None)
    if found is not None:
        raise ServingError(f"--out {job.out} already holds output (e.g. {found.name}); pass --resume to finish "
                           "that run, --force to write over it, or choose an empty folder")


# --- the settings every image of one --out is drawn with ---------------------------------------

SETTINGS_FILE = "sample.json"
# each setting as the command line spells it, for the error that names one
SETTING_FLAGS = {"model_version": "MODEL", "precision": "--precision", "format": "--format", "part_size": "--part-size",
                 "labels": "--labels", "truncation": "--truncation",
                 "max_train_similarity": "--max-train-similarity",
                 "mode": "--keep-top / --drs-accept / --drs-max-candidates"}


def _settings(engine: Engine, job: SampleJob) -> dict:
    """What decides a seed's pixels and where they are stored. A resumed run, or another shard
    into the same folder, must draw with the same, or one folder would mix two samples."""
    mode = {"name": type(job.mode).__name__.lower(), **dataclasses.asdict(job.mode)}
    return {"model_version": engine.card.version, "precision": engine.precision, "format": job.format,
            "part_size": job.part_size if job.format in ("npz", "tar") else None, "labels": job.labels,
            "truncation": job.truncation, "max_train_similarity": job.max_train_similarity, "mode": mode}


def _refuse_other_settings(job: SampleJob, settings: dict) -> None:
    """Output written before the settings were recorded has no file, and is taken as it is."""
    try:
        earlier = json.loads((job.out / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return
    for name, value in settings.items():
        if name in earlier and earlier[name] != value:
            raise ServingError(f"{SETTING_FLAGS[name]}: --out {job.out} was sampled with {name} "
                               f"{_shown(earlier[name])}, this run asks for {_shown(value)}; run with the "
                               "same settings, --force to write over that output, or choose another folder")


def _shown(value) -> str:
    return "none" if value is None else json.dumps(value)


def _generate(engine: Engine, seeds: list[int], labels: list[int] | None, job: SampleJob) -> np.ndarray:
    """The images of one write, in engine runs of at most batch_size seeds (npz/tar parts are larger)."""
    parts = []
    for i in range(0, len(seeds), job.batch_size):
        request = GenerateRequest(seeds=seeds[i:i + job.batch_size],
                                  labels=labels[i:i + job.batch_size] if labels else None,
                                  truncation=job.truncation, mode=job.mode,
                                  max_train_similarity=job.max_train_similarity)
        parts.append(engine.sample(request).images)
    return np.concatenate(parts)


def _labels_for(job: SampleJob, positions: list[int]) -> list[int] | None:
    """The label of each seed at these positions of the job: the --labels list, cycled."""
    if job.labels is None:
        return None
    return [job.labels[i % len(job.labels)] for i in positions]


def _finish(future: Future, manifest, bar) -> None:
    count, text = future.result()
    manifest.write(text)
    manifest.flush()
    bar.update(count)


def _write(fmt: str, target: Path, seeds, labels, images) -> tuple[int, str]:
    """Write one batch, in a worker process; (images written, their manifest lines as JSON
    text), serialised there so the process running the engine does less."""
    lines = WRITERS[fmt](target, seeds, labels, images)
    return len(lines), "".join(json.dumps(line) + "\n" for line in lines)


# --- shards ---------------------------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """'3/10' -> (3, 10): shard 3 of 10, counted from 0."""
    index_text, slash, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ServingError(f"--shard: {text!r} is not K/N (for example 0/4)") from None
    if not slash or count < 1 or not 0 <= index < count:
        raise ServingError(f"--shard: {text!r} is not allowed; use K/N with 0 <= K < N")
    return index, count


def shard_of(seeds: list[int], index: int, count: int) -> list[int]:
    """Every count-th seed starting at index: shards are disjoint, balanced, and together
    they are the whole list."""
    return seeds[index::count]


# --- merging shards ------------------------------------------------------------------------------

SHARD_MANIFEST = re.compile(r"^manifest-(\d{5})-of-(\d{5})\.jsonl$")


def merge_shards(out: Path, seeds: list[int], fmt: str = "png", part_size: int = 10_000) -> dict:
    """Check that the shards' manifests in `out` cover every seed exactly once, each listed
    file present with its sha256, and write them as one manifest.jsonl in the order of
    `seeds`. Raises ServingError naming the shard to run again."""
    found = sorted((int(m.group(1)), int(m.group(2))) for p in out.glob("manifest-*-of-*.jsonl")
                   if (m := SHARD_MANIFEST.match(p.name))) if out.is_dir() else []
    counts = {count for _, count in found}
    if not found or len(counts) != 1:
        raise ServingError(f"--merge: {out} holds no shard manifests of one job (manifest-K-of-N.jsonl; found "
                           f"{len(found)} of {len(counts)} different N)")
    count = counts.pop()
    missing_shards = sorted(set(range(count)) - {index for index, _ in found})
    if missing_shards:
        raise ServingError(f"--merge: shard {missing_shards[0]} of {count} has no manifest in {out}; run it with "
                           f"--shard {missing_shards[0]}/{count}")
    lines: dict[int, dict] = {}
    for index in range(count):
        job = SampleJob(seeds=shard_of(seeds, index, count), out=out, format=fmt, part_size=part_size,
                        shard=(index, count))
        listed = [line.get("seed") for line in _manifest_lines(job)]
        strangers = sorted(set(listed) - set(job.seeds), key=str)
        if strangers:
            raise ServingError(f"--merge: {job.manifest_path.name} lists seed {strangers[0]}, which shard "
                               f"{index}/{count} of --seeds does not hold; merge with the --seeds the shards used")
        valid = _completed(job)
        missing = [seed for seed in job.seeds if seed not in valid]
        if missing:
            raise ServingError(f"--merge: shard {index}/{count} lacks {len(missing)} of its {len(job.seeds)} images "
                               f"(missing or damaged, e.g. seed {missing[0]}); run it again with --shard "
                               f"{index}/{count} --resume")
        for line in _manifest_lines(job):
            lines.setdefault(line["seed"], line)  # a resumed shard lists each seed once; keep the first
    merged = out / "manifest.jsonl"
    write_atomically(merged, "".join(json.dumps(lines[seed]) + "\n" for seed in seeds).encode())
    return {"shards": count, "seeds": len(seeds), "manifest": str(merged)}


# --- resume ------------------------------------------------------------------------------------

def _manifest_lines(job: SampleJob) -> list[dict]:
    if not job.manifest_path.is_file():
        return []
    lines = []
    for text in job.manifest_path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue  # a line cut short by a crash: its image is redone
    return lines


def _completed(job: SampleJob) -> set[int]:
    """Seeds whose output exists and still hashes to what the manifest says."""
    wanted = set(job.seeds)
    valid = set()
    cache: dict[str, dict[int, bytes]] = {}
    for line in _manifest_lines(job):
        seed = line.get("seed")
        if seed not in wanted or not isinstance(line.get("file"), str):
            continue
        data = job.layout.stored(job.out / line["file"], seed, cache)
        if data is not None and hashlib.sha256(data).hexdigest() == line.get("sha256"):
            valid.add(seed)
    return valid


def _rewrite_manifest(job: SampleJob, done: set[int]) -> None:
    """Keep one line per valid seed, so the manifest never lists an image twice."""
    kept, seen = [], set()
    for line in _manifest_lines(job):
        if line.get("seed") in done and line["seed"] not in seen:
            kept.append(json.dumps(line))
            seen.add(line["seed"])
    job.manifest_path.write_text("".join(text + "\n" for text in kept))
