"""Memorisation guard: an image too close to a training image is redrawn from its seed's own
stream (as rejection sampling redraws), so a request can ask that no image it gets be a
near-copy. Closeness is the cosine similarity of thumbnails to the nearest training image
(serving/formats/train_index.py). An image still depends only on its seed, label, truncation
and the threshold.
"""

from __future__ import annotations

import numpy as np

from .candidates import candidate_latents
from .latents import generator_feeds

MAX_REDRAWS = 64  # candidates per image before the least similar one is kept
REDRAWS_PER_ROUND = 8


async def redraw_near_copies(images: np.ndarray, seeds: list[int], labels: np.ndarray | None,
                             truncation: float | None, threshold: float, graphs) -> tuple[np.ndarray, dict]:
    """`images` (plain generation of `seeds`) with every image whose similarity to a training
    image exceeds `threshold` replaced by the first of its seed's candidates 1, 2, ... that does
    not (or the least similar of MAX_REDRAWS). Returns the images and what it cost."""
    similarity, _ = await graphs.nearest_training(images)
    images, similarity = images.copy(), similarity.copy()
    pending = [i for i in np.flatnonzero(similarity > threshold)]
    redrawn, drawn, start = len(pending), 0, 1  # candidate 0 is the seed's own latent: the image given
    while pending and start <= MAX_REDRAWS:
        k = min(REDRAWS_PER_ROUND, MAX_REDRAWS - start + 1)
        z = candidate_latents([seeds[i] for i in pending], graphs.latent_dim, k, truncation, first=start)
        round_labels = None if labels is None else np.repeat(labels[pending], k)
        candidates = await graphs.generate(generator_feeds(z, round_labels))
        scores, _ = await graphs.nearest_training(candidates)
        candidates = candidates.reshape(len(pending), k, *candidates.shape[1:])
        scores = scores.reshape(len(pending), k)
        drawn += len(pending) * k
        still = []
        for row, i in enumerate(pending):
            under = np.flatnonzero(scores[row] <= threshold)
            column = int(under[0]) if len(under) else int(scores[row].argmin())
            if scores[row, column] < similarity[i]:
                images[i], similarity[i] = candidates[row, column], scores[row, column]
            if not len(under):
                still.append(i)
        pending, start = still, start + k
    stats = {"max_train_similarity": threshold, "redrawn": redrawn, "candidates_drawn": drawn,
             "still_above": len(pending), "train_similarity": [round(float(s), 4) for s in similarity]}
    return images, stats
