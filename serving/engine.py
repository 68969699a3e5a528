"""The engine: a model folder in, uint8 images and calibrated scores out. Pure NumPy, no web
framework; the batch command line and the tests call it directly, the HTTP service runs the
same graphs and the same modes through its batchers.

    >>> engine = Engine("models/digits")
    >>> engine.generate([0, 1, 2]).shape        # (N, H, W, C) uint8
    (3, 8, 8, 1)
    >>> logits, probabilities = engine.score(images)
    >>> engine.sample(generate_request(engine.card, seeds=[4, 5], keep_top=0.25)).images
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import NoDiscriminator, NoTrainIndex, ServingError
from .formats import spot_check
from .formats.model_card import ModelCard
from .formats.train_index import TrainIndex
from .requests import (
    GenerateRequest,
    ProjectRequest,
    ScoreRequest,
    generate_request,
    interpolate_request,
    project_request,
    require_encoder,
    score_request,
)
from .runtime import engines, openvino_graph
from .runtime.graph import Graph
from .runtime.openvino_graph import OpenVinoGraph
from .runtime.providers import CPU, DEVICES, cuda_device_count, usable_providers, wanted_provider
from .sampling import modes, projection
from .sampling.latents import discriminator_feeds, generator_feeds, label_array, latents
from .sampling.rejection import AcceptanceRule, burn_in_seeds
from .settings import PRECISIONS

log = logging.getLogger("ganserve.engine")
WARM_UP_PIXELS = 64 * 28 * 28  # rows x pixels of the largest CPU warm-up run (64 rows at 28 px)
SPLIT_PROBE_MAX_PIXELS = 64 * 64  # graphs up to this image size are probed for whether splitting pays


class Engine:
    def __init__(self, model: str | Path | ModelCard, device: str = "auto", max_batch: int = 256,
                 threads: int | None = None, precision: str | None = None, warmup: bool = True,
                 pad_batches: bool | None = None, engine: str | None = None):
        """`engine`: auto (measured per model and machine: serving/runtime/engines.py), onnxruntime or
        openvino; `precision`: auto, fp32, fp16 (GPU graphs) or bf16. None: GANSERVE_ENGINE and
        GANSERVE_PRECISION, else auto: every command on a machine makes the same choice."""
        precision = precision or os.environ.get("GANSERVE_PRECISION") or "auto"
        if device not in DEVICES:
            raise ServingError(f"device: {device!r} is not allowed; use one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise ServingError(f"precision: {precision!r} is not allowed; use one of {', '.join(PRECISIONS)}")
        if max_batch < 1:
            raise ServingError(f"max_batch: {max_batch} is not allowed; use a positive integer")
        self.card = model if isinstance(model, ModelCard) else ModelCard.read(model)
        self.requested_device, self.max_batch = device, max_batch
        self._graph_options = {"device": device, "threads": threads, "max_batch": max_batch,
                               "pad_batches": pad_batches}
        self.requested_engine = engine or os.environ.get("GANSERVE_ENGINE") or "auto"
        self.choice = engines.choose(self.card, device, self.requested_engine, precision)
        self._open_graphs(precision)
        self.fell_back = self._report_provider(device)
        self._rules: dict[tuple, AcceptanceRule] = {}  # (rate, truncation) -> rule, fitted on first use
        self._burn_in: dict[float | None, np.ndarray] = {}  # truncation -> D's logits on the burn-in set
        self._burn_in_lock = threading.Lock()  # requests in executor threads share one computation
        self.graphs = modes.Graphs(self.card.latent_dim, self.card.num_classes, _at_once(self.run_generator),
                                   _at_once(self.run_discriminator), self.probability,
                                   _at_once(self.acceptance_rule), _at_once(self.run_blend),
                                   _at_once(self.run_encoder), _at_once(self.nearest_training))
        self.ready = False
        self.spot_check: dict = {"verdict": "not run (no warm-up)"}
        if warmup:
            self.warm_up()

    # --- graphs -----------------------------------------------------------------------------
    def _open_graphs(self, precision: str) -> None:
        on_gpu = usable_providers(self.requested_device)[0] != CPU
        # float16 graphs only pay off on GPUs; on the CPU they are slower and less exact.
        self._fp16 = self.choice.engine == "onnxruntime" and (precision == "fp16" or (precision == "auto" and on_gpu))
        self.generator = self._open("generator", precision)
        # A model imported without its discriminator serves generation only (requests.py refuses the rest)
        self.discriminator = self._open("discriminator", precision) if self.card.has_discriminator else None
        self._blend: Graph | OpenVinoGraph | None = None
        self._encoder: Graph | OpenVinoGraph | None = None
        self._train_index: TrainIndex | None = None
        self.provider = self.generator.provider
        if self.choice.engine == "openvino":
            self.precision = self.choice.precision
        else:
            self.precision = "fp16" if self.generator.path.name.endswith(".fp16.onnx") else "fp32"
        log.info("%s: %s (%s)", self.card.name, self.choice.reason, self.precision)

    def _open(self, key: str, precision: str) -> Graph | OpenVinoGraph:
        if self.choice.engine == "openvino":
            options = self._graph_options
            return OpenVinoGraph(self.card.graph_path(key), self.choice.precision, options["threads"],
                                 options["max_batch"])
        path = (self._fp16 and self.card.graph_path(f"{key}_fp16")) or self.card.graph_path(key)
        if self._fp16 and not path.name.endswith(".fp16.onnx"):
            log.log(logging.WARNING if precision == "fp16" else logging.INFO,
                    "no float16 %s graph in %s (export with --fp16); using float32", key, self.card.folder)
        return Graph(path, **self._graph_options)

    def _report_provider(self, device: str) -> bool:
        """Log the provider in use; warn (and return True) when it is not the one asked for:
        an explicit cuda/tensorrt that is not there, or a GPU provider that failed to start."""
        if self.choice.engine == "openvino":
            return False  # chosen for the CPU: nothing else was asked for
        wanted = wanted_provider(device)
        if self.provider != wanted:
            log.warning("device %r: wanted %s, ONNX Runtime gave %s (installed providers: %s; GPUs the NVIDIA "
                        "driver reports: %d)", device, wanted, self.provider, ", ".join(ort.get_available_providers()),
                        cuda_device_count())
            return True
        log.info("ONNX Runtime provider: %s (%s graphs)", self.provider, self.precision)
        return False

    def run_generator(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds {z, labels?} -> uint8 (N, H, W, C)."""
        if not len(feeds["z"]):
            return np.empty((0, *self.card.image_shape), np.uint8)
        return self.generator.run(feeds)

    def run_discriminator(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds {images, labels?} -> logits float32 (N,)."""
        if self.discriminator is None:
            raise NoDiscriminator(f"model {self.card.name!r} has no discriminator (it was imported as a generator "
                                  "only), so it cannot score images")
        if not len(feeds["images"]):
            return np.empty(0, np.float32)
        return self.discriminator.run(feeds).astype(np.float32, copy=False)

    def run_blend(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds {z, label_weights} -> uint8 images: the generator_blend graph, opened on first
        use (most deployments never blend classes)."""
        if self._blend is None:
            self._blend = self._open("generator_blend", self.precision)
        return self._blend.run(feeds)

    def run_encoder(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds {images} -> float32 latents (N, latent_dim): E for projection, opened on first
        use (a model folder without one serves everything else)."""
        require_encoder(self.card)
        if self._encoder is None:
            self._encoder = self._open("encoder", self.precision)
        return self._encoder.run(feeds).astype(np.float32, copy=False)

    def nearest_training(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarity of each image's thumbnail to the nearest training image's, that
        image's row in the training set): the training index, read on first use."""
        return self.train_index().nearest(images)

    def train_index(self) -> TrainIndex:
        """The training images' thumbnails (serving/formats/train_index.py), read on first use."""
        if not self.card.has_train_index:
            raise NoTrainIndex(f"model {self.card.name!r} was exported without an index of its training images; "
                               "export it again where its data is (or with --index-data)")
        if self._train_index is None:
            self._train_index = TrainIndex.read(self.card.folder / self.card.train_index["file"])
        return self._train_index

    def warm_up(self) -> None:
        """Run both graphs at every size the runtime wants warm, so first requests are fast;
        keep split batches only for the graphs they speed up."""
        pixels = self.card.height * self.card.width
        sizes = self.generator.warm_up_sizes()
        if self.provider == "CPUExecutionProvider":  # a CPU needs no per-shape warm-up: a few rows of a big image do
            sizes = sorted({min(size, max(2, WARM_UP_PIXELS // pixels)) for size in sizes})
        for count in sizes:
            images = self.generate(list(range(count)))
            if self.discriminator is not None:
                self.score(images, self.default_labels(list(range(count))))
        # Only small graphs can lose to the thread hand-off of a split; a big one always gains
        # from more cores, and probing it would cost seconds at start-up.
        if self.generator.splits_batches and pixels <= SPLIT_PROBE_MAX_PIXELS:
            seeds = list(range(64))
            feeds = generator_feeds(latents(seeds, self.card.latent_dim), self.default_labels(seeds))
            self.generator.keep_split_if_faster(feeds)
            if self.discriminator is not None:
                self.discriminator.keep_split_if_faster(discriminator_feeds(self.run_generator(feeds),
                                                                            feeds.get("labels")))
        self.spot_check = self._check_against_export()
        if self.choice.engine == "openvino" and self.spot_check["verdict"] in ("differs", "broken"):
            self._refuse_reduced_precision()
            return
        self.ready = True

    def _refuse_reduced_precision(self) -> None:
        """OpenVINO's pixels beyond its tolerance: an explicit --engine openvino is refused; an
        automatic choice falls back to ONNX Runtime, saying why."""
        figures, precision = self.spot_check, self.precision
        why = (f"OpenVINO's {precision} images were {figures['max_level_diff']} levels from the export's for seeds "
               f"{figures['seeds']}, beyond the {figures['levels_allowed']} allowed")
        if self.requested_engine == "openvino":
            raise ServingError(f"engine: {why}; serve this model with --engine onnxruntime")
        log.warning("%s: %s; ONNX Runtime serves it", self.card.name, why)
        self.close()
        self.choice = engines.Choice("onnxruntime", "fp32", f"ONNX Runtime: {why}", self.choice.measured)
        self._open_graphs("fp32")
        self.warm_up()

    def _check_against_export(self) -> dict:
        """The export's outputs for two seeds, again on this runtime (serving/formats/spot_check.py)."""
        path = self.card.folder / spot_check.FILE if self.card.folder else None
        if path is None or spot_check.FILE not in self.card.files:
            return {"verdict": f"skipped: the model has no {spot_check.FILE} (exported by an earlier ganserve)"}
        with np.load(path, allow_pickle=False) as archive:
            saved = {key: archive[key] for key in archive.files}
        seeds = [int(seed) for seed in saved["seeds"]]
        images = self.generate(seeds)
        logits = self.score(images, self.default_labels(seeds))[0] if self.discriminator is not None else None
        figures = spot_check.compare(saved, images, logits, self.precision)
        if self.choice.engine == "openvino":
            return figures  # a reduced precision's own rule: warm_up refuses or falls back
        if figures["verdict"] == "broken":
            raise ServingError(f"{path.name}: onnxruntime {ort.__version__} on {self.provider} gives images "
                               f"{figures['max_level_diff']} levels away from the export's for seeds {seeds}; this "
                               "runtime does not compute the model: install the version model.json names")
        if figures["verdict"] == "differs":
            log.warning("onnxruntime %s on %s differs from the export's runtime by %d levels for seeds %s (the "
                        "export allowed %d); /model reports it", ort.__version__, self.provider,
                        figures["max_level_diff"], seeds, figures["levels_allowed"])
        return figures

    def default_labels(self, seeds: list[int]) -> np.ndarray | None:
        return label_array(seeds, None, self.card.num_classes)

    # --- the model-level API ----------------------------------------------------------------
    def generate(self, seeds: Sequence[int], labels: Sequence[int] | None = None,
                 truncation: float | None = None) -> np.ndarray:
        """uint8 (N, H, W, C) images; image i depends only on (seeds[i], labels[i], truncation)."""
        request = generate_request(self.card, seeds=list(seeds), labels=None if labels is None else list(labels),
                                   truncation=truncation)
        return self.sample(request).images

    def sample(self, request: GenerateRequest) -> modes.Sampled:
        """Any generation mode (plain, best-of, rejection), with what it cost."""
        return modes.run_now(modes.sample(request, self.graphs))

    def interpolate(self, seed_from: int, seed_to: int, frames: int = 8, label: int | None = None,
                    truncation: float | None = None, label_to: int | None = None) -> np.ndarray:
        """uint8 (frames, H, W, C) from seed_from's image to seed_to's (serving/sampling/modes.py)."""
        request = interpolate_request(self.card, seed_from=seed_from, seed_to=seed_to, frames=frames,
                                      class_label=label, label_to=label_to, truncation=truncation)
        return modes.run_now(modes.interpolate(request, self.graphs))

    def project(self, images: np.ndarray, labels: Sequence[int] | None = None, **options) -> projection.Projected:
        """The latents G draws `images` (uint8 (N, H, W, C)) from: E's guess, refined
        (serving/sampling/projection.py; `options`: rounds, candidates)."""
        request = project_request(self.card, images, None if labels is None else list(labels), **options)
        return self.project_images(request)

    def project_images(self, request: ProjectRequest) -> projection.Projected:
        return modes.run_now(projection.project(request, self.graphs))

    def score(self, images: np.ndarray, labels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits, p_real) float32 (N,) for uint8 (N, H, W, C) images."""
        return self.score_images(score_request(self.card, images, None if labels is None else list(labels)))

    def score_images(self, request: ScoreRequest) -> tuple[np.ndarray, np.ndarray]:
        labels = None if request.labels is None else np.asarray(request.labels, np.int64)
        logits = self.run_discriminator(discriminator_feeds(request.images, labels))
        return logits, self.probability(logits)

    def probability(self, logits: np.ndarray) -> np.ndarray:
        a, b = self.card.platt
        return (1.0 / (1.0 + np.exp(-(a * logits.astype(np.float64) + b)))).astype(np.float32)

    def acceptance_rule(self, rate: float, truncation: float | None = None) -> AcceptanceRule:
        """Rejection sampling's rule for a target rate, fitted once on a fixed burn-in set."""
        key = (rate, truncation)
        if key not in self._rules:
            self._rules[key] = AcceptanceRule.fit(self.burn_in_logits(truncation), rate)
        return self._rules[key]

    def burn_in_logits(self, truncation: float | None = None) -> np.ndarray:
        """D's logits on the burn-in images, computed once per truncation: the costly part of a
        rule, so a new rate only re-solves for gamma."""
        with self._burn_in_lock:
            if truncation not in self._burn_in:
                seeds = list(burn_in_seeds())
                feeds = generator_feeds(latents(seeds, self.card.latent_dim, truncation),
                                        self.default_labels(seeds))
                images = self.run_generator(feeds)
                self._burn_in[truncation] = self.run_discriminator(discriminator_feeds(images, feeds.get("labels")))
            return self._burn_in[truncation]

    def runtime(self) -> dict:
        """What this engine runs on, for the model card's view."""
        runtime = f"openvino {openvino_graph.version()}" if self.choice.engine == "openvino" else \
            f"onnxruntime {ort.__version__}"
        return {"device_requested": self.requested_device, "provider": self.provider, "precision": self.precision,
                "engine": {"name": self.choice.engine, "requested": self.requested_engine,
                           "why": self.choice.reason, "measured": self.choice.measured},
                "fell_back": self.fell_back, "runtime": runtime,
                "parity_measured_with": self.card.parity.get("generator", {}).get("runtime"),
                "spot_check": self.spot_check}

    def info(self) -> dict:
        """The model card as `/model` shows it."""
        return self.card.view(self.runtime())

    def close(self) -> None:
        """Let go of the graphs' thread pools now (the sessions go with the last reference):
        a server that swaps versions unloads the old one without waiting for the GC."""
        for graph in (self.generator, self.discriminator, self._blend, self._encoder):
            if graph is not None:
                graph.close()


def _at_once(run):
    """An awaitable form of a function that returns at once (see modes.run_now)."""
    async def call(*args):
        return run(*args)

    return call
