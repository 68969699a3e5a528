"""The ONNX engine: a model folder in, uint8 images and calibrated scores out. Pure numpy,
no web framework; the HTTP service and the batch sampler both call it.

    >>> engine = Engine("models/digits")
    >>> engine.generate([0, 1, 2]).shape        # (N, H, W, C) uint8
    (3, 8, 8, 1)
    >>> logits, probabilities = engine.score(images)
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .cpus import available_cpus
from .errors import ServingError
from .latent_paths import candidate_latents, candidates_for, slerp
from .latents import check_seed, check_truncation, default_labels, latents
from .model_card import ModelCard, open_model_folder
from .rejection import BURN_IN_COUNT, BURN_IN_SEED, AcceptanceRule, check_rejection, rejection_sample

log = logging.getLogger("ganserve.engine")
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PROVIDERS = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
PROVIDERS["auto"] = PROVIDERS["tensorrt"]
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
SPLIT_MIN_ROWS = 8  # from here on, splitting a batch across cores beat intra-operator threads
# Rows per run on each core's twin: two cores sharing one cache ran dcgan28's G 8-13% faster
# in runs of 16 than in one run per core at batch 64-256 (activations stay in cache); dcgan64: flat.
SPLIT_RUN_ROWS = 16


class Engine:
    def __init__(self, model: str | Path | ModelCard, device: str | None = None, max_batch: int = 256,
                 threads: int | None = None, precision: str = "auto", warmup: bool = True,
                 pad_batches: bool | None = None):
        device = device or os.environ.get("GANSERVE_DEVICE", "auto")
        if device not in DEVICES:
            raise ServingError(f"device: {device!r} is not allowed; use one of {', '.join(DEVICES)}")
        if precision not in ("auto", "fp32", "fp16"):
            raise ServingError(f"precision: {precision!r} is not allowed; use auto, fp32 or fp16")
        if max_batch < 1:
            raise ServingError(f"max_batch: {max_batch} is not allowed; use a positive integer")
        self.card = model if isinstance(model, ModelCard) else open_model_folder(model)
        self.max_batch = max_batch
        self.requested_device = device
        self._generator = self._open("generator", device, threads, precision)
        self._discriminator = self._open("discriminator", device, threads, precision)
        self.provider = self._generator.get_providers()[0]
        self._split_ways = (threads or available_cpus()) if self.provider == "CPUExecutionProvider" else 1
        self._split: dict[ort.InferenceSession, ort.InferenceSession] = {}
        if self._split_ways > 1:
            # Batches split across single-threaded twins of the sessions, one part per core,
            # ran 8-21% faster than one run spreading each operator over the cores
            # (benchmarks/README.md): ConvTranspose parallelises poorly inside ONNX Runtime.
            for session, key in ((self._generator, "generator"), (self._discriminator, "discriminator")):
                self._split[session] = self._open(key, device, 1, precision)
            self._split_pool = ThreadPoolExecutor(self._split_ways, thread_name_prefix="ganserve-engine")
        self.precision = "fp16" if self._generator_path.name.endswith(".fp16.onnx") else "fp32"
        # On a GPU every new batch size costs a search: cuDNN's exhaustive algorithm benchmark
        # (ONNX Runtime's default) or a TensorRT engine build. Served batch sizes vary from run
        # to run, so GPU runs are padded to a few sizes (powers of two), all warmed up at start.
        self.pad_batches = self.provider != "CPUExecutionProvider" if pad_batches is None else pad_batches
        self.fell_back = self._report_provider(device)
        self._rules: dict = {}  # (rate, truncation) -> AcceptanceRule, fitted on first use
        self._burn_in: dict = {}  # truncation -> burn-in logits
        self._burn_in_lock = threading.Lock()  # requests in executor threads share one computation
        self._threads, self._blend_session = threads, None
        self.ready = False
        if warmup:
            self.warm_up()

    # --- sessions ---------------------------------------------------------------------------
    def _open(self, key: str, device: str, threads: int | None, precision: str) -> ort.InferenceSession:
        providers = usable_providers(device)
        on_gpu = providers[0] != "CPUExecutionProvider"
        # float16 graphs only pay off on GPUs; on the CPU they are slower and less exact.
        use_fp16 = precision == "fp16" or (precision == "auto" and on_gpu)
        path = (use_fp16 and self.card.graph_path(f"{key}_fp16")) or self.card.graph_path(key)
        if use_fp16 and not path.name.endswith(".fp16.onnx"):
            log.log(logging.WARNING if precision == "fp16" else logging.INFO,
                    "no float16 %s graph in %s (export with --fp16); using float32", key, self.card.path)
        if key == "generator":
            self._generator_path = path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)

    def _report_provider(self, device: str) -> bool:
        """Log the provider in use; warn (and return True) when it is not the one asked for:
        an explicit cuda/tensorrt that is not there, or a GPU provider that failed to start."""
        wanted = PROVIDERS[device][0] if device in ("cuda", "tensorrt") else usable_providers(device)[0]
        if self.provider != wanted:
            log.warning("device %r: wanted %s, ONNX Runtime gave %s (installed providers: %s; GPUs the NVIDIA "
                        "driver reports: %d)", device, wanted, self.provider, ", ".join(ort.get_available_providers()),
                        cuda_device_count())
            return True
        log.info("ONNX Runtime provider: %s (%s graphs)", self.provider, self.precision)
        return False

    def _run(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(feeds.values())))
        if self.pad_batches:
            feeds = pad_rows(feeds, bucket_rows(count, self.max_batch))
        if self.provider == "CPUExecutionProvider":
            return session.run(None, feeds)[0][:count]
        # On a GPU, bind the output to host memory: ORT copies device -> host once, into the
        # array it returns, instead of into its own buffer and then again into numpy.
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(session.get_outputs()[0].name, "cpu")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0][:count]

    def warm_up(self) -> None:
        """Run both graphs once at batch 1 and once at a full chunk, so first requests are fast;
        on CUDA at every padded size, so cuDNN's per-shape searches all happen here (TensorRT
        instead widens one engine's shape range: 1 and the full chunk cover every size). Keep
        split batches only for the graphs they speed up."""
        every_size = self.pad_batches and self.provider == "CUDAExecutionProvider"
        sizes = set(batch_buckets(self.max_batch)) if every_size else {1, min(self.max_batch, 64)}
        for count in sorted(sizes):
            images = self.generate(list(range(count)))
            self.score(images, self._labels_or_none(list(range(count)), None))
        if self._split:
            seeds = list(range(64))
            g_feeds = self.generator_feeds(seeds)
            self._keep_split_if_faster(self._generator, g_feeds)
            self._keep_split_if_faster(self._discriminator, scoring_feeds(self.run_generator(g_feeds), g_feeds))
        self.ready = True

    def _keep_split_if_faster(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> None:
        """Tiny graphs (the mlp) lose more to thread hand-offs than they gain from more cores."""
        def best_of_three(run) -> float:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            return min(times)

        serial = best_of_three(lambda: self._serial(session, feeds))  # _serial never uses the twins
        split = best_of_three(lambda: self._chunked(session, feeds))
        if split > 0.95 * serial:
            del self._split[session]

    # --- the two operations -----------------------------------------------------------------
    def generate(self, seeds: Sequence[int], labels: Sequence[int] | None = None,
                 truncation: float | None = None) -> np.ndarray:
        """uint8 (N, H, W, C) images; image i depends only on (seeds[i], labels[i], truncation)."""
        return self.run_generator(self.generator_feeds(seeds, labels, truncation))

    def score(self, images: np.ndarray, labels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits, p_real) float32 (N,) for uint8 (N, H, W, C) images."""
        logits = self.run_discriminator(self.discriminator_feeds(images, labels))
        return logits, self.probability(logits)

    # The halves of each operation, so a batcher can merge the feeds of several requests.
    def generator_feeds(self, seeds: Sequence[int], labels: Sequence[int] | None = None,
                        truncation: float | None = None) -> dict[str, np.ndarray]:
        seeds = [check_seed(s, "seeds") for s in seeds]
        truncation = check_truncation(truncation)
        label_array = self._labels_or_none(seeds, labels)
        feeds = {"z": latents(seeds, self.card.latent_dim, truncation)}
        if label_array is not None:
            feeds["labels"] = label_array
        return feeds

    def discriminator_feeds(self, images: np.ndarray, labels: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        expected = self.card.image_shape
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise ServingError(f"images: got {images.dtype} {list(images.shape)}; the model scores uint8 "
                               f"images of shape [N, {expected[0]}, {expected[1]}, {expected[2]}]")
        if self.card.num_classes and labels is None:
            raise ServingError(f"labels: this model is conditional on {self.card.num_classes} classes; "
                               "give one label per image")
        feeds = {"images": np.ascontiguousarray(images)}
        label_array = self._labels_or_none(range(len(images)), labels)
        if label_array is not None:
            feeds["labels"] = label_array
        return feeds

    def run_generator(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        height, width, channels = self.card.image_shape
        session = self._blend_generator() if "label_weights" in feeds else self._generator
        out = self._chunked(session, feeds)
        return out if out is not None else np.empty((0, height, width, channels), np.uint8)

    def run_discriminator(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self._chunked(self._discriminator, feeds)
        return out.astype(np.float32) if out is not None else np.empty(0, np.float32)

    def _chunked(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray | None:
        """Run in chunks of at most max_batch rows (bounded memory per run); on a multi-core
        CPU, batches of SPLIT_MIN_ROWS or more go to the single-threaded twins in parallel."""
        count = len(next(iter(feeds.values())))
        twin = self._split.get(session)
        if twin is not None and count >= SPLIT_MIN_ROWS:
            # Short runs taken by whichever thread is free, not one fixed share per core: a
            # thread the OS delays (the sampler's writers share the cores) then takes fewer runs
            # instead of holding up the whole batch. At least one run per core; never empty.
            rows = min(self.max_batch, SPLIT_RUN_ROWS, math.ceil(count / self._split_ways))
            parts = self._split_pool.map(lambda start: self._run(twin, {k: v[start:start + rows] for k, v in
                                                                        feeds.items()}), range(0, count, rows))
            return np.concatenate(list(parts))
        return self._serial(session, feeds)

    def _serial(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray | None:
        count = len(next(iter(feeds.values())))
        parts = [self._run(session, {k: v[i:i + self.max_batch] for k, v in feeds.items()})
                 for i in range(0, count, self.max_batch)]
        return np.concatenate(parts) if parts else None

    def generate_best_of(self, seeds: Sequence[int], labels: Sequence[int] | None = None,
                         truncation: float | None = None, keep_top: float = 1.0) -> tuple[np.ndarray, dict]:
        """Discriminator rejection sampling (after Azadi et al. 2019), as best-of-K: each image
        is the candidate D finds most real among K = 1/keep_top drawn from the seed's own
        streams. Always returns len(seeds) images; the stats say what it cost."""
        feeds, candidates = self.best_of_feeds(seeds, labels, truncation, keep_top)
        images = self.run_generator(feeds)
        logits = self.run_discriminator(scoring_feeds(images, feeds))
        return self.pick_best(images, logits, candidates)

    def best_of_feeds(self, seeds: Sequence[int], labels: Sequence[int] | None, truncation: float | None,
                      keep_top: float) -> tuple[dict[str, np.ndarray], int]:
        candidates = candidates_for(keep_top)
        plain = self.generator_feeds(seeds, labels, truncation)  # validates seeds, labels, truncation
        feeds = {"z": candidate_latents(list(seeds), self.card.latent_dim, candidates, check_truncation(truncation))}
        if "labels" in plain:
            feeds["labels"] = np.repeat(plain["labels"], candidates)
        return feeds, candidates

    def pick_best(self, images: np.ndarray, logits: np.ndarray, candidates: int) -> tuple[np.ndarray, dict]:
        count = len(images) // candidates
        best = logits.reshape(count, candidates).argmax(axis=1)
        chosen = images.reshape(count, candidates, *images.shape[1:])[np.arange(count), best]
        probabilities = self.probability(logits.reshape(count, candidates)[np.arange(count), best])
        return chosen, {"candidates_drawn": int(count * candidates), "acceptance_rate": 1.0 / candidates,
                        "chosen_candidate": best.tolist(), "p_real": probabilities.tolist()}

    def rejection_rule(self, rate: float, truncation: float | None = None) -> AcceptanceRule:
        """The acceptance rule for a target rate, fitted once on a fixed burn-in set."""
        key = (rate, truncation)
        if key not in self._rules:
            self._rules[key] = AcceptanceRule.fit(self.burn_in_logits(truncation), rate)
        return self._rules[key]

    def burn_in_logits(self, truncation: float | None = None) -> np.ndarray:
        """D's logits on the burn-in images, computed once per truncation: the costly part of
        a rule (BURN_IN_COUNT images), so a new rate only re-solves for gamma."""
        with self._burn_in_lock:
            if truncation not in self._burn_in:
                seeds = range(BURN_IN_SEED, BURN_IN_SEED + BURN_IN_COUNT)
                feeds = self.generator_feeds(seeds, None, truncation)
                self._burn_in[truncation] = self.run_discriminator(scoring_feeds(self.run_generator(feeds), feeds))
            return self._burn_in[truncation]

    def generate_rejection(self, seeds: Sequence[int], labels: Sequence[int] | None = None,
                           truncation: float | None = None, rate: float = 0.25,
                           max_candidates: int = 16) -> tuple[np.ndarray, dict]:
        """Discriminator rejection sampling (serving/rejection.py); returns images and stats."""
        check_rejection(rate, max_candidates)
        feeds = self.generator_feeds(seeds, labels, truncation)  # validates seeds, labels, truncation

        async def generate(f):
            return self.run_generator(f)

        async def score(f):
            return self.run_discriminator(f)

        result = asyncio.run(rejection_sample(list(seeds), feeds.get("labels"), check_truncation(truncation),
                                              self.rejection_rule(rate, truncation), rate, max_candidates,
                                              self.card.latent_dim, generate, score))
        return result.images, result.stats()

    def interpolate(self, seed_from: int, seed_to: int, frames: int, label: int | None = None,
                    truncation: float | None = None, label_to: int | None = None) -> np.ndarray:
        """uint8 (frames, H, W, C) along the great circle between two seeds' latents; the first
        and last frames are the two seeds' own images. Conditional models may also blend from
        `label` to `label_to` on the way."""
        return self.run_generator(self.interpolation_feeds(seed_from, seed_to, frames, label, truncation, label_to))

    def interpolation_feeds(self, seed_from: int, seed_to: int, frames: int, label: int | None = None,
                            truncation: float | None = None, label_to: int | None = None) -> dict[str, np.ndarray]:
        """One class for every frame (the plain G), or, with a different `label_to`, class
        embeddings blended linearly from one to the other (the generator_blend graph)."""
        classes = self.card.num_classes
        for field, value in (("class_label", label), ("label_to", label_to)):
            if value is not None and not classes:
                raise ServingError(f"{field}: this model is unconditional; leave it out")
            if value is not None and not (isinstance(value, (int, np.integer)) and 0 <= value < classes):
                raise ServingError(f"{field}: {value!r} is not allowed; use a class index 0..{classes - 1}")
        if label_to is not None and label is None:
            raise ServingError("label_to: give the first frame's class too (class_label)")
        labels = None if label is None else [label, label if label_to is None else label_to]
        feeds = self.generator_feeds([seed_from, seed_to], labels, truncation)
        path = {"z": slerp(feeds["z"][0], feeds["z"][1], frames)}
        if "labels" not in feeds:
            return path
        first, last = feeds["labels"]
        if label_to is None:
            path["labels"] = np.full(frames, first, dtype=np.int64)
            return path
        if self.card.graph_path("generator_blend") is None:
            raise ServingError("label_to: this model folder has no generator_blend graph (it was exported by an "
                               "older ganserve); export it again to interpolate between classes")
        one_hot = np.eye(self.card.num_classes, dtype=np.float32)
        t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None]
        path["label_weights"] = (1.0 - t) * one_hot[first] + t * one_hot[last]  # (frames, classes)
        return path

    def _blend_generator(self) -> ort.InferenceSession:
        """Opened on first use: most deployments never blend classes."""
        if self._blend_session is None:
            self._blend_session = self._open("generator_blend", self.requested_device, self._threads, "fp32")
        return self._blend_session

    def probability(self, logits: np.ndarray) -> np.ndarray:
        a, b = self.card.calibration
        return (1.0 / (1.0 + np.exp(-(a * logits.astype(np.float64) + b)))).astype(np.float32)

    def _labels_or_none(self, seeds: Sequence[int], labels: Sequence[int] | None) -> np.ndarray | None:
        classes = self.card.num_classes
        if not classes:
            if labels is not None:
                raise ServingError("labels: this model is unconditional; leave labels out")
            return None
        if labels is None:
            return default_labels(list(seeds), classes)
        if len(labels) != len(seeds):
            raise ServingError(f"labels: got {len(labels)} labels for {len(seeds)} images; give one per image")
        array = np.asarray(labels)
        if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() >= classes)):
            bad = next(v for v in labels if not (isinstance(v, (int, np.integer)) and 0 <= v < classes))
            raise ServingError(f"labels: {bad!r} is not allowed; use class indices 0..{classes - 1}")
        return array.astype(np.int64)

    def info(self) -> dict:
        """The model card as the service shows it, with the provider actually in use."""
        raw = self.card.raw
        height, width, channels = self.card.image_shape
        return {"name": self.card.name, "version": self.card.version, "architecture": raw.get("architecture"),
                "image": {"height": height, "width": width, "channels": channels, "dtype": "uint8",
                          "layout": "NHWC"},
                "latent_dim": self.card.latent_dim, "num_classes": self.card.num_classes,
                "class_names": raw.get("class_names"),
                "device_requested": self.requested_device, "provider": self.provider,
                "precision": self.precision, "fell_back": self.fell_back,
                "calibration": raw["calibration"], "parity": raw.get("parity"),
                "source": raw.get("source")}


def scoring_feeds(images: np.ndarray, generator_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """D's feeds for images just generated: the same labels they were generated with."""
    return {"images": images, **{k: v for k, v in generator_feeds.items() if k == "labels"}}


@functools.cache
def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """The batch sizes padded runs use: powers of two below max_batch, and max_batch."""
    return tuple(sorted({1 << power for power in range(max_batch.bit_length()) if 1 << power < max_batch}
                        | {max_batch}))


def bucket_rows(count: int, max_batch: int) -> int:
    """The smallest bucket that holds `count` rows (count <= max_batch)."""
    return next(size for size in batch_buckets(max_batch) if size >= count)


def pad_rows(feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Feeds grown to `rows` rows by repeating their first row (always a valid input); every
    output row depends only on its own input row, so the real rows come out unchanged."""
    count = len(next(iter(feeds.values())))
    if rows <= count:
        return feeds
    return {name: np.concatenate([value, np.repeat(value[:1], rows - count, axis=0)]) for name, value in feeds.items()}


def usable_providers(device: str) -> list[str]:
    """The providers to ask ONNX Runtime for, best first, among those installed."""
    available = set(ort.get_available_providers())
    if gpu_wanted(device):
        _preload_cuda_libraries()
    else:
        available -= GPU_PROVIDERS
    if device == "auto" and not _tensorrt_libraries_present():
        available.discard("TensorrtExecutionProvider")  # onnxruntime-gpu lists it even without TensorRT
    return [p for p in PROVIDERS[device] if p in available]


def gpu_wanted(device: str) -> bool:
    """Whether `device` asks ONNX Runtime for a GPU provider here (it may still fail to start).
    onnxruntime-gpu lists its GPU providers on any host, so this also needs a GPU that the
    driver reports: without one, `auto` is the CPU with no CUDA library loaded and no warning,
    and an explicit `cuda` falls back with a warning that says no GPU was found. Loads nothing
    itself, so the serving layout can be chosen before any worker starts."""
    if device == "cpu" or not GPU_PROVIDERS & set(ort.get_available_providers()):
        return False
    return cuda_device_count() > 0


@functools.cache
def cuda_device_count() -> int:
    """GPUs the NVIDIA driver reports (0 without a driver), asked through libcuda itself so
    the serving install needs no torch. Initialising the driver here is safe: BentoML starts
    its workers with exec, and the only processes ganserve forks (the sampler's PNG writers)
    never call CUDA."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


_cuda_preloaded = False


def _tensorrt_libraries_present() -> bool:
    try:
        ctypes.CDLL("libnvinfer.so.10")
    except OSError:
        return False
    return True


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu[cuda,cudnn] brings CUDA and cuDNN as pip packages; load them before the
    first CUDA session so no system-wide CUDA install is needed (ONNX Runtime >= 1.21)."""
    global _cuda_preloaded
    if not _cuda_preloaded and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except OSError as error:  # the provider then reports its own failure and we fall back
            log.warning("could not preload CUDA libraries: %s", error)
        _cuda_preloaded = True
