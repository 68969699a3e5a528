"""Calibrate D's logits into a probability that an image is real (Platt scaling), on held-out
real images and generated ones, and measure how well D separates them (AUROC).

What the probability means: how much an image looks like *this model's training data* rather
than like this generator's output, judged by a discriminator trained alongside it. It is not
a general deepfake detector: images from other generators or other domains are out of scope.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def fit_platt(real_logits: np.ndarray, fake_logits: np.ndarray) -> dict:
    """p(real) = sigmoid(a * logit + b), fitted by maximum likelihood on balanced classes."""
    logits = np.concatenate([real_logits, fake_logits]).astype(np.float64)[:, None]
    truth = np.concatenate([np.ones(len(real_logits)), np.zeros(len(fake_logits))])
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logits, truth)  # C large: (almost) no shrinkage
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    probabilities = 1.0 / (1.0 + np.exp(-(a * logits[:, 0] + b)))
    return {
        "method": "platt",
        "a": a,
        "b": b,
        "auroc": float(roc_auc_score(truth, logits[:, 0])),
        "brier": float(np.mean((probabilities - truth) ** 2)),
        "num_real": int(len(real_logits)),
        "num_fake": int(len(fake_logits)),
    }
