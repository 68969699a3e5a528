"""The generation modes, each written once: plain, best-of-K by D, discriminator rejection
sampling, and interpolation. Adding a mode means a function here and its request fields
(`serving/requests.py`).

A mode is an `async` function over `Graphs`: the model's sizes and callables that run its
graphs. The HTTP service passes callables that go through its cross-request batchers; the
engine (and with it the batch CLI) passes callables that run the graphs at once, and drives
the coroutine with `run_now`, which costs nothing since such awaits never suspend.

    >>> sampled = run_now(sample(request, graphs))
    >>> sampled.images.shape                     # uint8 (N, H, W, C)
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import numpy as np

from ..requests import BestOf, GenerateRequest, InterpolateRequest, Plain, Rejection
from .candidates import candidate_latents
from .interpolation import class_blend, slerp
from .latents import discriminator_feeds, generator_feeds, label_array, latents
from .memorisation import redraw_near_copies
from .rejection import AcceptanceRule, uniform

Run = Callable[[dict[str, np.ndarray]], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Graphs:
    """What a mode needs of a model."""

    latent_dim: int
    num_classes: int
    generate: Run  # feeds {z, labels?} -> uint8 images (N, H, W, C)
    score: Run  # feeds {images, labels?} -> logits (N,)
    probability: Callable[[np.ndarray], np.ndarray]  # logits -> calibrated p(real)
    acceptance_rule: Callable[[float, float | None], Awaitable[AcceptanceRule]]  # (rate, truncation)
    blend: Run | None = None  # feeds {z, label_weights} -> images (conditional models)
    encode: Run | None = None  # feeds {images} -> latents (models with an encoder: projection)
    # images -> (similarity to the nearest training image, its row): models with a training index
    nearest_training: Callable[[np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray]]] | None = None


@dataclass
class Sampled:
    images: np.ndarray  # uint8 (N, H, W, C), one per seed
    labels: np.ndarray | None  # the class each image was generated with; None: unconditional
    stats: dict = field(default_factory=dict)  # what guided sampling cost; empty for plain


async def sample(request: GenerateRequest, graphs: Graphs) -> Sampled:
    """A generate request through its mode (plain, best-of-K, rejection): one image per seed."""
    if request.latents is not None:  # given latents (a projection's): one image each
        labels = None if request.labels is None else np.asarray(request.labels, np.int64)
        return Sampled(await graphs.generate(generator_feeds(request.latents, labels)), labels)
    labels = label_array(request.seeds, request.labels, graphs.num_classes)
    mode = request.mode
    if isinstance(mode, Plain):
        feeds = generator_feeds(latents(request.seeds, graphs.latent_dim, request.truncation), labels)
        images = await graphs.generate(feeds)
        if request.max_train_similarity is None:
            return Sampled(images, labels)
        images, stats = await redraw_near_copies(images, request.seeds, labels, request.truncation,
                                                 request.max_train_similarity, graphs)
        return Sampled(images, labels, stats)
    if isinstance(mode, BestOf):
        return await best_of(request, mode, labels, graphs)
    if isinstance(mode, Rejection):
        return await rejection(request, mode, labels, graphs)
    raise TypeError(f"unknown sampling mode {mode!r}")


async def best_of(request: GenerateRequest, mode: BestOf, labels: np.ndarray | None, graphs: Graphs) -> Sampled:
    """Each image is the candidate D finds most real among K drawn from the seed's own streams.
    Always len(seeds) images; the stats say what it cost."""
    count, k = len(request.seeds), mode.candidates
    candidate_labels = None if labels is None else np.repeat(labels, k)
    z = candidate_latents(request.seeds, graphs.latent_dim, k, request.truncation)
    drawn = await graphs.generate(generator_feeds(z, candidate_labels))
    logits = (await graphs.score(discriminator_feeds(drawn, candidate_labels))).reshape(count, k)
    best = logits.argmax(axis=1)
    chosen = drawn.reshape(count, k, *drawn.shape[1:])[np.arange(count), best]
    stats = {"candidates_drawn": count * k, "acceptance_rate": 1.0 / k, "chosen_candidate": best.tolist(),
             "p_real": graphs.probability(logits[np.arange(count), best]).tolist()}
    return Sampled(chosen, labels, stats)


async def rejection(request: GenerateRequest, mode: Rejection, labels: np.ndarray | None, graphs: Graphs) -> Sampled:
    """Rounds of 1/rate candidates for every seed still pending, until all are accepted or the
    cap is reached; then the candidate D rated highest. An image depends only on its seed,
    label, truncation, rate and cap, never on the rest of the batch."""
    rule = await graphs.acceptance_rule(mode.rate, request.truncation)
    seeds, count = request.seeds, len(request.seeds)
    chosen: list[np.ndarray | None] = [None] * count
    best: list[tuple[float, np.ndarray | None]] = [(-np.inf, None)] * count  # (logit, image)
    pending, start, drawn, accepted = list(range(count)), 0, 0, 0
    per_round = max(1, math.ceil(1.0 / mode.rate))
    while pending and start < mode.max_candidates:
        k = min(per_round, mode.max_candidates - start)
        z = candidate_latents([seeds[i] for i in pending], graphs.latent_dim, k, request.truncation, first=start)
        round_labels = None if labels is None else np.repeat(labels[pending], k)
        images = await graphs.generate(generator_feeds(z, round_labels))
        logits = (await graphs.score(discriminator_feeds(images, round_labels))).reshape(len(pending), k)
        probabilities = rule.probability(logits)
        images = images.reshape(len(pending), k, *images.shape[1:])
        drawn += len(pending) * k
        still = []
        for row, i in enumerate(pending):
            for column in range(k):
                if uniform(seeds[i], start + column) < probabilities[row, column]:
                    chosen[i] = images[row, column]
                    accepted += 1
                    break
                if logits[row, column] > best[i][0]:
                    best[i] = (logits[row, column], images[row, column])
            if chosen[i] is None:
                still.append(i)
        pending, start = still, start + k
    for i in pending:
        chosen[i] = best[i][1]
    stats = {"candidates_drawn": drawn, "acceptance_rate": round(count / drawn, 4), "accepted_by_test": accepted,
             "fallback_best_of_cap": count - accepted}
    return Sampled(np.stack(chosen), labels, stats)


async def interpolate(request: InterpolateRequest, graphs: Graphs) -> np.ndarray:
    """uint8 (frames, H, W, C) along the great circle between two seeds' latents (or latents
    given, as /project returns them); the first and last frames are the ends' own images. With
    `label_to`, conditional models also blend the class embedding from `label` to `label_to` on
    the way (the generator_blend graph)."""
    ends = [0 if request.seed_from is None else request.seed_from, 0 if request.seed_to is None else request.seed_to]
    given = None if request.label is None else [request.label, request.label_to if request.label_to is not None
                                                else request.label]
    end_labels = label_array(ends, given, graphs.num_classes)
    z = latents(ends, graphs.latent_dim, request.truncation)
    for row, given_latent in enumerate((request.latent_from, request.latent_to)):
        if given_latent is not None:
            z[row] = given_latent if request.truncation is None else np.clip(given_latent, -request.truncation,
                                                                            request.truncation)
    path = slerp(z[0], z[1], request.frames)
    if end_labels is None:
        return await graphs.generate({"z": path})
    first, last = (int(v) for v in end_labels)
    if request.label_to is None:
        return await graphs.generate({"z": path, "labels": np.full(request.frames, first, dtype=np.int64)})
    return await graphs.blend({"z": path, "label_weights": class_blend(first, last, graphs.num_classes,
                                                                          request.frames)})


def run_now(coroutine: Coroutine):
    """The result of a coroutine whose awaits all complete at once (callables that run the
    graphs directly never suspend), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("run_now: the coroutine suspended; use asyncio for callables that wait")
