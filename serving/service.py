"""The BentoML service: /generate, /score, /model, plus BentoML's /readyz, /livez, /metrics.

Configured by environment variables (serving/settings.py); `ganserve serve` sets them.
The model loads and warms up in a background thread, so the server answers /livez at once
and /readyz turns 200 only when every worker's engine is ready (serving/readiness.py).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import secrets
import threading
from pathlib import Path
from typing import Annotated, Literal

import bentoml
import numpy as np
from annotated_types import Ge, Le
from pydantic import Field
from starlette.responses import JSONResponse, Response

from . import readiness
from .batcher import Batcher
from .engine import Engine, scoring_feeds
from .errors import ServingError
from .imaging import decode_image
from .latent_paths import MAX_CANDIDATES, MAX_FRAMES
from .latents import MAX_SEED, MAX_TRUNCATION, MIN_TRUNCATION
from .limits import RequestGuard
from .metrics import BATCH_ROWS, IMAGES_GENERATED, IMAGES_SCORED, PROBABILITY
from .png import encode_pngs
from .rejection import rejection_sample
from .responses import FORMATS, MEDIA_TYPES, encode_frames, encode_images, needs_pngs
from .settings import Settings

log = logging.getLogger("bentoml.ganserve")  # BentoML shows its own namespace's logs
SETTINGS = Settings.from_env()
MODEL_IS_FOLDER = Path(SETTINGS.model).is_dir()
readiness.start(bentoml.server_context.worker_index)

Seed = Annotated[int, Ge(0), Le(MAX_SEED)]
Truncation = Annotated[float, Ge(MIN_TRUNCATION), Le(MAX_TRUNCATION)]
Label = Annotated[int, Ge(0)]
KeepTop = Annotated[float, Ge(1 / MAX_CANDIDATES), Le(1.0)]


class NotReady(ServingError):
    status_code = 503


def error_response(error: ServingError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status_code)


@bentoml.service(
    name="ganserve",
    workers=SETTINGS.workers,
    traffic={"timeout": 60, "max_concurrency": 1024},
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class GanService:
    if not MODEL_IS_FOLDER:  # a model-store tag: declaring it pins the model into the bento
        bento_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.load_error: str | None = None
        threading.Thread(target=self._load, name="ganserve-load", daemon=True).start()

    def _load(self) -> None:
        folder = SETTINGS.model if MODEL_IS_FOLDER else self.bento_model.path
        try:
            engine = Engine(folder, device=SETTINGS.device, max_batch=SETTINGS.max_batch,
                            threads=SETTINGS.threads or None)
        except ServingError as error:  # e.g. a file whose sha256 does not match: never served
            self.load_error = f"the model cannot be served: {error}"
            log.error("ganserve: %s", self.load_error)
            return
        self.generate_batcher = Batcher(engine.run_generator, SETTINGS.max_batch, SETTINGS.max_queue,
                                        BATCH_ROWS.labels(graph="generator").observe,
                                        SETTINGS.batch_wait_ms / 1000, encode=encode_pngs)
        self.score_batcher = Batcher(engine.run_discriminator, SETTINGS.max_batch, SETTINGS.max_queue,
                                     BATCH_ROWS.labels(graph="discriminator").observe,
                                     SETTINGS.batch_wait_ms / 1000)
        self.engine = engine
        readiness.mark_ready(bentoml.server_context.worker_index)
        # Everything made while starting (the framework, the model) lives as long as the worker:
        # keep the cyclic GC from re-scanning it in the middle of requests.
        gc.freeze()
        log.info("ganserve: serving %s %s on %s (%s)%s", engine.card.name, engine.card.version, engine.provider,
                 engine.precision, "; fell back from the device asked for" if engine.fell_back else "")

    def __is_ready__(self) -> bool:
        """200 on /readyz only when every worker of this server has its engine warm."""
        return (self.engine is not None and self.engine.ready
                and readiness.all_ready(SETTINGS.workers, bentoml.server_context.worker_index))

    def _ready_engine(self) -> Engine:
        if self.engine is None:
            raise NotReady(self.load_error or "the model is still loading; retry when /readyz answers 200")
        return self.engine

    @bentoml.api(route="/generate")
    async def generate(
        self,
        n: Annotated[int, Ge(1), Le(SETTINGS.max_images)] = 1,
        seed: Seed | None = Field(None, description="first seed; image i uses seed + i (random when omitted)"),
        seeds: list[Seed] | None = Field(None, max_length=SETTINGS.max_images, description="explicit seeds"),
        class_label: Label | None = Field(None, description="one class for every image (conditional models)"),
        labels: list[Label] | None = Field(None, max_length=SETTINGS.max_images, description="a class per image"),
        truncation: Truncation | None = Field(None, description="resample latent components beyond +-psi"),
        keep_top: KeepTop | None = Field(None, description="discriminator-guided: each image is the best of "
                                         "1/keep_top candidates by D (0.25: best of 4)"),
        drs_accept: KeepTop | None = Field(None, description="discriminator rejection sampling (Azadi et al.) "
                                           "at this acceptance rate, e.g. 0.25"),
        drs_max_candidates: Annotated[int, Ge(1), Le(MAX_CANDIDATES)] = Field(
            16, description="with drs_accept: most candidates per image before the best so far is returned"),
        format: Literal[FORMATS] = Field("png", description="png (one image or a grid), zip, json or npy"),
    ) -> bytes:  # a Response in fact: BentoML passes it through, the annotation documents it
        """Generate images. The response carries the seeds used (X-Seeds header, or JSON)."""
        pngs = None
        try:
            engine = self._ready_engine()
            seed_list = resolve_seeds(n, seed, seeds)
            label_list = resolve_labels(len(seed_list), class_label, labels, engine.card.num_classes)
            if keep_top is not None and drs_accept is not None:
                raise ServingError("drs_accept: give keep_top or drs_accept, not both")
            if drs_accept is not None:
                feeds = engine.generator_feeds(seed_list, label_list, truncation)
                images, sampling = await self._rejection_sample(engine, seed_list, feeds, truncation, drs_accept,
                                                                drs_max_candidates)
            elif keep_top is None or keep_top == 1.0:
                feeds = engine.generator_feeds(seed_list, label_list, truncation)
                if needs_pngs(format, len(seed_list)):  # encoded with the rest of the batch, off the loop
                    (images, pngs), sampling = await self.generate_batcher.submit(feeds, encode=True), {}
                else:
                    images, sampling = await self.generate_batcher.submit(feeds), {}
            else:
                feeds, candidates = engine.best_of_feeds(seed_list, label_list, truncation, keep_top)
                drawn = await self.generate_batcher.submit(feeds)
                logits = await self.score_batcher.submit(scoring_feeds(drawn, feeds))
                images, sampling = engine.pick_best(drawn, logits, candidates)
                feeds = {k: v[::candidates] for k, v in feeds.items()}  # one row per returned image
        except ServingError as error:
            return error_response(error)
        IMAGES_GENERATED.inc(len(images))
        used_labels = feeds["labels"].tolist() if "labels" in feeds else None
        model = {"name": engine.card.name, "version": engine.card.version}
        body = encode_images(images, seed_list, used_labels, format, model, sampling, pngs)
        headers = {"X-Seeds": ",".join(map(str, seed_list)), "X-Model-Version": engine.card.version,
                   "X-Model-Name": engine.card.name}
        if used_labels is not None:
            headers["X-Labels"] = ",".join(map(str, used_labels))
        if sampling:
            headers["X-Candidates-Drawn"] = str(sampling["candidates_drawn"])
            headers["X-Acceptance-Rate"] = f"{sampling['acceptance_rate']:.4g}"
        return Response(body, media_type=MEDIA_TYPES[format], headers=headers)

    async def _rejection_sample(self, engine: Engine, seeds: list[int], feeds: dict, truncation: float | None,
                                rate: float, max_candidates: int) -> tuple[np.ndarray, dict]:
        loop = asyncio.get_running_loop()
        # fitted once per rate on a fixed burn-in set; off the event loop, it takes a moment
        rule = await loop.run_in_executor(None, engine.rejection_rule, rate, truncation)
        result = await rejection_sample(seeds, feeds.get("labels"), truncation, rule, rate, max_candidates,
                                        engine.card.latent_dim, self.generate_batcher.submit,
                                        self.score_batcher.submit)
        return result.images, result.stats()

    @bentoml.api(route="/interpolate")
    async def interpolate(
        self,
        seed_from: Seed = Field(description="the first frame is this seed's image"),
        seed_to: Seed = Field(description="the last frame is this seed's image"),
        frames: Annotated[int, Ge(2), Le(MAX_FRAMES)] = 8,
        class_label: Label | None = Field(None, description="the class of every frame (conditional models)"),
        label_to: Label | None = Field(None, description="conditional models: blend the class from class_label "
                                                         "to this one across the frames"),
        truncation: Truncation | None = None,
        format: Literal["png", "gif"] = Field("png", description="png (a strip, left to right) or an animated gif"),
        frame_ms: Annotated[int, Ge(20), Le(5000)] = Field(100, description="gif: milliseconds per frame"),
    ) -> bytes:
        """Frames along the great circle between two seeds' latents (spherical interpolation);
        conditional models can also morph from one class to another (class_label -> label_to)."""
        try:
            engine = self._ready_engine()
            resolve_labels(1, class_label, None, engine.card.num_classes)  # refuses labels on unconditional models
            path = engine.interpolation_feeds(seed_from, seed_to, frames, class_label, truncation, label_to)
            if "label_weights" in path:  # the blend graph: nothing to batch it with
                images = await asyncio.get_running_loop().run_in_executor(None, engine.run_generator, path)
            else:
                images = await self.generate_batcher.submit(path)
        except ServingError as error:
            return error_response(error)
        IMAGES_GENERATED.inc(len(images))
        return Response(encode_frames(images, format, frame_ms), media_type="image/" + format,
                        headers={"X-Seeds": f"{seed_from},{seed_to}", "X-Model-Version": engine.card.version})

    @bentoml.api(route="/score")
    async def score(
        self,
        # Lists rather than Optional: BentoML 1.4 cannot infer an optional file field.
        images: list[Path] = Field(default_factory=list, description="PNG or JPEG files (multipart)"),
        array: list[Path] = Field(default_factory=list, max_length=1,
                                  description="one .npy file of uint8 [N, H, W, C] (instead of images)"),
        labels: list[Label] | None = Field(None, description="a class per image (conditional models)"),
        resize: bool = Field(False, description="convert images of another size or colour type"),
    ) -> dict:
        """p(real) per image: how much it looks like the model's training data (calibrated D)."""
        try:
            engine = self._ready_engine()
            batch, names = load_score_inputs(images, array, resize, engine.card.image_shape,
                                             SETTINGS.max_score_images)
            feeds = engine.discriminator_feeds(batch, labels)
            logits = await self.score_batcher.submit(feeds)
        except ServingError as error:
            return error_response(error)
        probabilities = engine.probability(logits)
        IMAGES_SCORED.inc(len(logits))
        for p in probabilities:
            PROBABILITY.observe(float(p))
        results = [{"image": name, "logit": float(logit), "p_real": float(p)}
                   for name, logit, p in zip(names, logits, probabilities)]
        return JSONResponse({"model": {"name": engine.card.name, "version": engine.card.version},
                             "results": results}, headers={"X-Model-Version": engine.card.version})

    @bentoml.api(route="/model")
    async def model(self) -> dict:
        """The model card: name, version, image shape, classes, provider in use, parity figures."""
        try:
            return JSONResponse(self._ready_engine().info())
        except ServingError as error:
            return error_response(error)


GanService.add_asgi_middleware(
    RequestGuard, max_bytes=SETTINGS.max_body_bytes,
    fields={api.route: set(list(inspect.signature(api.func).parameters)[1:]) for api in GanService.apis.values()})


def resolve_seeds(n: int, seed: int | None, seeds: list[int] | None) -> list[int]:
    if seeds is not None:
        if seed is not None:
            raise ServingError("seeds: give either seed (the first of n) or a list of seeds, not both")
        if not seeds:
            raise ServingError("seeds: the list is empty; give at least one seed")
        if n not in (1, len(seeds)):
            raise ServingError(f"n: {n} does not match the {len(seeds)} seeds given; leave n out")
        return list(seeds)
    first = seed if seed is not None else secrets.randbelow(2**31)
    if first + n - 1 > MAX_SEED:
        raise ServingError(f"seed: {first} + n - 1 passes the largest seed 2**63-1; use a smaller seed")
    return list(range(first, first + n))


def resolve_labels(count: int, class_label: int | None, labels: list[int] | None,
                   num_classes: int) -> list[int] | None:
    if class_label is not None and labels is not None:
        raise ServingError("labels: give either class_label (one for all) or labels (one per image), not both")
    if not num_classes:
        if class_label is not None or labels is not None:
            field = "class_label" if class_label is not None else "labels"
            raise ServingError(f"{field}: this model is unconditional; leave {field} out")
        return None
    chosen = [class_label] * count if class_label is not None else labels
    if chosen is not None:
        bad = next((v for v in chosen if v >= num_classes), None)
        if bad is not None:
            field = "class_label" if class_label is not None else "labels"
            raise ServingError(f"{field}: {bad} is not a class of this model; use 0..{num_classes - 1}")
    return chosen


def load_score_inputs(images: list[Path], array: list[Path], resize: bool,
                      shape: tuple[int, int, int], limit: int) -> tuple[np.ndarray, list[str]]:
    if bool(images) == bool(array):
        raise ServingError("images: send PNG/JPEG files as 'images' or one .npy file as 'array' (exactly one)")
    if array:
        try:
            batch = np.load(array[0], allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ServingError(f"array: not a readable .npy file ({error})") from None
        if batch.ndim == 3:
            batch = batch[None]
        if len(batch) > limit:
            raise ServingError(f"array: {len(batch)} images is more than the limit of {limit}")
        return batch, [f"array[{i}]" for i in range(len(batch))]
    if len(images) > limit:
        raise ServingError(f"images: {len(images)} files is more than the limit of {limit}")
    decoded = [decode_image(Path(p).read_bytes(), f"images[{i}]", shape, resize) for i, p in enumerate(images)]
    return np.stack(decoded), [f"images[{i}]" for i in range(len(images))]
