"""Drift windows of one served version: D's logits on /score's images and on a sample of
/generate's, each compared with its reference from model.json (serving/formats/drift.py), and
exported as Prometheus gauges (`ganserve_drift_psi`)."""

from __future__ import annotations

import collections
import threading

import numpy as np

from ..formats.drift import ALERT_PSI, MIN_WINDOW, psi

STREAMS = {"score": "real", "generate": "generated"}  # a window -> the reference set it is compared with


class Window:
    """The last `size` logits of one stream (thread-safe: scores arrive from the event loop and
    from batcher threads)."""

    def __init__(self, size: int):
        self.logits: collections.deque[float] = collections.deque(maxlen=size)
        self.seen = 0
        self._lock = threading.Lock()

    def add(self, logits: np.ndarray) -> None:
        with self._lock:
            self.logits.extend(float(v) for v in np.ravel(logits))
            self.seen += int(np.size(logits))

    def index(self, ref: dict) -> float | None:
        """PSI against `ref`, or None while the window holds fewer than MIN_WINDOW images."""
        with self._lock:
            values = np.fromiter(self.logits, np.float64, len(self.logits))
        return psi(ref, values) if len(values) >= MIN_WINDOW else None


class Monitor:
    """One served version's drift: a window per stream, and its reference from the card."""

    def __init__(self, card, size: int):
        self.references = (card.calibration or {}).get("drift")  # None: exported before drift was recorded
        self.windows = {stream: Window(size) for stream in STREAMS}
        self.size = size

    @property
    def enabled(self) -> bool:
        return self.references is not None

    def add(self, stream: str, logits: np.ndarray) -> float | None:
        """Add a stream's logits; returns its index now (None: no reference, or too few images)."""
        if not self.enabled:  # nothing to compare with: windows would only grow unread
            return None
        window = self.windows[stream]
        window.add(logits)
        return window.index(self.references[STREAMS[stream]])

    def view(self) -> dict:
        """What /model shows: per stream, the reference, the window's size and its index."""
        if not self.enabled:
            return {"enabled": False, "why": "the model was exported before drift references were recorded; "
                                             "export it again"}
        streams = {}
        for stream, window in self.windows.items():
            ref = self.references[STREAMS[stream]]
            streams[stream] = {"compared_with": f"D's logits on {STREAMS[stream]} images at export",
                               "reference": ref, "window_images": len(window.logits), "seen": window.seen,
                               "psi": window.index(ref)}
        return {"enabled": True, "window": self.size, "min_window": MIN_WINDOW, "alert_psi": ALERT_PSI,
                "streams": streams}
