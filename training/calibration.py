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

MIN_PER_SIDE = 500  # real and generated images below which a calibration is flagged as small
SATURATED_SHARE = 0.9  # flagged when this share of the calibration images scores below 0.01 or above 0.99


def fit_platt(real_logits: np.ndarray, fake_logits: np.ndarray) -> dict:
    """p(real) = sigmoid(a * logit + b), fitted by L2-regularised maximum likelihood on
    balanced classes.

    The fit is on standardised logits with the default L2 strength (C=1): on separable
    data an unregularised fit diverges (slopes of 100+ were seen on 50 + 50 images), turning
    every score into 0 or 1. A calibration that is still degenerate (too few images, or D
    separating them all) is flagged with the reasons, for export, model.json and /model.
    """
    logits = np.concatenate([real_logits, fake_logits]).astype(np.float64)
    truth = np.concatenate([np.ones(len(real_logits)), np.zeros(len(fake_logits))])
    centre, scale = float(logits.mean()), float(logits.std()) or 1.0
    model = LogisticRegression(C=1.0, max_iter=1000).fit(((logits - centre) / scale)[:, None], truth)
    slope = float(model.coef_[0, 0])
    a, b = slope / scale, float(model.intercept_[0]) - slope * centre / scale
    probabilities = 1.0 / (1.0 + np.exp(-(a * logits + b)))
    auroc = float(roc_auc_score(truth, logits))
    warnings = []
    if min(len(real_logits), len(fake_logits)) < MIN_PER_SIDE:
        warnings.append(f"small: {len(real_logits)} real and {len(fake_logits)} generated images, fewer than "
                        f"{MIN_PER_SIDE} each; pass more with --calibration-data or --calibration-samples")
    if auroc == 1.0:
        warnings.append("separable: D tells every real image from every generated one, so the fit's slope is set "
                        "by the regularisation, not by the data")
    saturated = float(np.mean((probabilities < 0.01) | (probabilities > 0.99)))
    if saturated >= SATURATED_SHARE:
        warnings.append(f"saturated: {saturated:.0%} of the calibration images score below 0.01 or above 0.99")
    return {
        "method": "platt",
        "a": a,
        "b": b,
        # what the export measured, for the swap gate (serving/repository/gate.py) to hold a version to
        "reference": {"generated": reference_scores(probabilities[truth == 0]),
                      "real": reference_scores(probabilities[truth == 1])},
        "auroc": auroc,
        "brier": float(np.mean((probabilities - truth) ** 2)),
        "num_real": int(len(real_logits)),
        "num_fake": int(len(fake_logits)),
        "degenerate": bool(warnings),
        "warnings": warnings,
    }


def reference_scores(p_real: np.ndarray) -> dict:
    """The 5th, 50th and 95th percentiles and the mean of calibrated scores: what a model's
    images scored at export, recorded in model.json."""
    p05, p50, p95 = np.percentile(p_real, [5, 50, 95])
    return {"p05": round(float(p05), 5), "p50": round(float(p50), 5), "p95": round(float(p95), 5),
            "mean": round(float(p_real.mean()), 5), "count": int(len(p_real))}
