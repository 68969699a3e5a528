"""Projection: from an image to the latent G draws it from, with forward passes only.

The encoder E (encoder.onnx, trained by `ganserve train-encoder`) makes the first guess. A
gradient-free search then refines it, since ONNX Runtime cannot backpropagate through G: each
round draws `candidates` latents around the current mean (one batched run of G for every image
of the request), keeps the best latent found so far, and moves the mean to a weighted mean of
the round's best quarter (an evolution strategy: CMA-ES's recombination and weights, with one
step size per image that shrinks every round and halves when a round found nothing better).
The distance is the mean squared error of the uint8 pixels, so refinement raises the PSNR that
is reported; it never returns a latent worse than E's.

An image's search draws from a stream seeded by its own bytes (and label), so it projects to
the same latent alone or in a batch, over HTTP or from `ganserve project`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..requests import ProjectRequest
from .latents import discriminator_feeds, generator_feeds

FIRST_STEP = 0.25  # per-component step size of the first round (latents are standard normal)
SHRINK = 0.8  # the step size's factor per round
SHRINK_WHEN_STUCK = 0.5  # and again when a round found nothing better


@dataclass
class Projected:
    latents: np.ndarray  # float32 (N, latent_dim): the best found
    images: np.ndarray  # uint8 (N, H, W, C): G's image of each
    mse_encoder: np.ndarray  # float64 (N,): E's guess, mean squared error of pixels in [0, 1]
    mse: np.ndarray  # after refinement (at most mse_encoder)
    p_real: np.ndarray | None  # D's calibrated probability of each reconstruction; None without D
    stats: dict = field(default_factory=dict)

    def figures(self, names: list[str]) -> list[dict]:
        """Per image, what every answer reports: its name, the distances from E alone and after
        refinement (mean squared error of pixels in [0, 1], and PSNR) and D's p_real."""
        before, after = psnr_db(self.mse_encoder), psnr_db(self.mse)
        p_real = [None] * len(names) if self.p_real is None else [round(float(p), 6) for p in self.p_real]
        return [{"image": name, "mse_encoder": float(self.mse_encoder[i]), "mse": float(self.mse[i]),
                 "psnr_encoder_db": round(float(before[i]), 3), "psnr_db": round(float(after[i]), 3),
                 "p_real": p_real[i]} for i, name in enumerate(names)]


def pixel_mse(images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) mean squared error of uint8 images, as fractions of full scale."""
    difference = images.astype(np.float32) - targets.astype(np.float32)
    return (difference * difference).reshape(len(images), -1).mean(axis=1).astype(np.float64) / 255.0 ** 2


def psnr_db(mse: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def recombination_weights(count: int) -> np.ndarray:
    """CMA-ES's weights for the best `count` candidates: log-decreasing, summing to 1."""
    weights = np.log(count + 0.5) - np.log(np.arange(1, count + 1))
    return (weights / weights.sum()).astype(np.float32)


def image_seed(image: np.ndarray, label: int | None) -> int:
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(label).encode()).digest()
    return int.from_bytes(digest[:8], "little")


async def project(request: ProjectRequest, graphs) -> Projected:
    """`graphs`: a modes.Graphs with `encode`. Returns the refined latents and their images."""
    targets = request.images
    count, k = len(targets), request.candidates
    labels = None if request.labels is None else np.asarray(request.labels, np.int64)
    start = (await graphs.encode({"images": targets})).astype(np.float32)
    best_images = await graphs.generate(generator_feeds(start, labels))
    best, best_mse = start.copy(), pixel_mse(best_images, targets)
    first_mse = best_mse.copy()
    mean, step = start.copy(), np.full(count, FIRST_STEP, np.float32)
    streams = [np.random.default_rng(image_seed(t, None if labels is None else int(labels[i])))
               for i, t in enumerate(targets)]
    weights = recombination_weights(max(1, k // 4))
    rows = np.arange(count)
    candidate_labels = None if labels is None else np.repeat(labels, k)
    repeated_targets = np.repeat(targets, k, axis=0) if request.rounds else None
    for _ in range(request.rounds):
        noise = np.stack([stream.standard_normal((k, start.shape[1]), dtype=np.float32) for stream in streams])
        candidates = mean[:, None, :] + step[:, None, None] * noise  # (N, K, latent)
        drawn = await graphs.generate(generator_feeds(candidates.reshape(count * k, -1), candidate_labels))
        mse = pixel_mse(drawn, repeated_targets).reshape(count, k)
        order = np.argsort(mse, axis=1, kind="stable")
        winner = order[:, 0]
        improved = mse[rows, winner] < best_mse
        best[improved] = candidates[rows, winner][improved]
        best_mse[improved] = mse[rows, winner][improved]
        best_images[improved] = drawn.reshape(count, k, *drawn.shape[1:])[rows, winner][improved]
        top = candidates[rows[:, None], order[:, :len(weights)]]  # (N, mu, latent)
        mean = np.where(improved[:, None], (weights[None, :, None] * top).sum(axis=1), best)
        step = step * np.where(improved, SHRINK, SHRINK * SHRINK_WHEN_STUCK).astype(np.float32)
    p_real = None
    if graphs.score is not None and request.with_p_real:
        p_real = graphs.probability(await graphs.score(discriminator_feeds(best_images, labels)))
    stats = {"rounds": request.rounds, "candidates": k, "generator_rows": count * (1 + request.rounds * k)}
    return Projected(best, best_images, first_mse, best_mse, p_real, stats)
