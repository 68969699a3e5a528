"""Drift references (model.json's `calibration.drift`) and the index that compares with them.

Is the server seeing, or drawing, images unlike those its model was exported with? At export,
D scores held-out real images and G's own images; the deciles of each set's logits are written
into model.json. The server (serving/http/drift.py) keeps a sliding window of D's
logits per stream: `score` (the images clients send to /score: unlike the training data?) and
`generate` (a sample of what /generate serves: has the model, its engine or its precision
changed what it draws?), and compares each window with its reference by the population
stability index over the reference's deciles:

    PSI = sum over bins of (window share - reference share) * ln(window share / reference share)

0 means the same distribution; by the usual rule, under 0.1 is stable, 0.1 to 0.25 a shift to
watch, and over 0.25 a real change (deploy/monitoring/prometheus-rule.yaml alerts there).
Logits rather than calibrated p_real: with bins at the reference's quantiles the index is the
same for any increasing transform, and logits stay informative where the calibration is flat.
"""

from __future__ import annotations

import numpy as np

BINS = 10
SMOOTHING = 1e-4  # a share of 0 would make the index infinite
ALERT_PSI = 0.25  # the alert's threshold (deploy/monitoring/prometheus-rule.yaml)
MIN_WINDOW = 64  # fewer images than this give no index: a handful of requests is not a distribution


def reference(logits: np.ndarray) -> dict:
    """The reference of one set: its deciles' inner edges, and the share of the set in each bin."""
    logits = np.asarray(logits, np.float64)
    edges = np.quantile(logits, np.arange(1, BINS) / BINS)
    return {"edges": [round(float(e), 6) for e in edges], "shares": [round(float(s), 6) for s in
                                                                     shares(logits, edges)],
            "count": int(len(logits))}


def shares(logits: np.ndarray, edges) -> np.ndarray:
    counts = np.bincount(np.searchsorted(np.asarray(edges), logits, side="right"), minlength=BINS)
    return counts / max(1, len(logits))


def psi(ref: dict, logits: np.ndarray) -> float:
    """The population stability index of `logits` against the reference `ref`."""
    expected = np.asarray(ref["shares"], np.float64) + SMOOTHING
    actual = shares(np.asarray(logits, np.float64), ref["edges"]) + SMOOTHING
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((actual - expected) * np.log(actual / expected)))
