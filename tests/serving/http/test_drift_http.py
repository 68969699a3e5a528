"""Drift on a real `ganserve serve`: /score traffic like the calibration's real images keeps the
gauge under the PrometheusRule's threshold, images unlike them push it past, and like ones
bring it back; a sample of /generate's images matches the export's reference."""

import io
import re
import time

import httpx
import numpy as np
import pytest

from export.exporter import ExportOptions, export_model
from serving.formats.model_card import ModelCard
from tests.conftest import ganserve_serve, make_release
from tests.deploy.test_manifests import drift_alerts

pytestmark = pytest.mark.slow
WINDOW = 128


def _npy(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()


def _gauge(metrics: str, name: str, stream: str) -> float | None:
    found = re.search(rf'^{name}\{{[^}}]*stream="{stream}"[^}}]*\}} (\S+)', metrics, re.M)
    return float(found.group(1)) if found else None


def _fires(metrics: str, stream: str) -> bool:
    """The PrometheusRule's expression for `stream`, evaluated on these metrics."""
    threshold = next(t for s, t in drift_alerts().values() if s == stream)
    value = _gauge(metrics, "ganserve_drift_psi", stream)
    return value is not None and value > threshold


@pytest.fixture(scope="module")
def noise_model(tmp_path_factory):
    """A model whose real data is uniform noise, calibrated on 1,000 such images, so that noise
    is in distribution and anything smooth is not."""
    root = tmp_path_factory.mktemp("drift")
    release = make_release(root / "run")
    np.savez(root / "calibration.npz", images=np.random.default_rng(9).integers(0, 256, (1000, 8, 8, 1), np.uint8))
    export_model(release, ExportOptions(out=root / "model", calibration_data=f"npz:{root / 'calibration.npz'}",
                                        calibration_samples=1000))
    return root / "model"


def test_score_drift_moves_past_the_alert_and_back(noise_model, tmp_path):
    reference = ModelCard.read(noise_model).calibration["drift"]
    assert reference["real"]["count"] == 1000 and len(reference["real"]["edges"]) == 9
    rng = np.random.default_rng(1)
    like = lambda: rng.integers(0, 256, (WINDOW, 8, 8, 1), np.uint8)  # noqa: E731
    unlike = np.repeat(np.linspace(0, 255, WINDOW).astype(np.uint8), 64).reshape(WINDOW, 8, 8, 1)  # flat greys
    readings = []
    with ganserve_serve(noise_model, tmp_path, "--workers", "1", "--drift-window", str(WINDOW),
                        "--drift-sample-every", "1") as base:
        before = httpx.get(base + "/metrics", timeout=30).text
        for images in (like(), unlike, like()):
            answer = httpx.post(base + "/score", files={"array": ("a.npy", _npy(images))}, timeout=60)
            assert answer.status_code == 200, answer.text
            metrics = httpx.get(base + "/metrics", timeout=30).text
            readings.append((_gauge(metrics, "ganserve_drift_psi", "score"), _fires(metrics, "score")))
        for _ in range(2):  # 128 generated images, each scored for the generate window
            assert httpx.post(base + "/generate", json={"n": 64, "format": "npy"}, timeout=60).status_code == 200
        for _ in range(100):  # the generate window is filled after the answers, in tasks of their own
            card = httpx.get(base + "/model", timeout=30).json()
            if card["drift"]["streams"]["generate"]["window_images"] >= WINDOW:
                break
            time.sleep(0.1)
        metrics = httpx.get(base + "/metrics", timeout=30).text
    assert _gauge(before, "ganserve_drift_psi", "score") is None  # no index before a window holds 64 images
    (in_psi, in_fires), (out_psi, out_fires), (back_psi, back_fires) = readings
    assert not in_fires and in_psi < 0.2, readings  # sampling noise of 128 images over 10 bins: ~0.07
    assert out_fires and out_psi > 1.0, readings
    assert not back_fires and back_psi < 0.2, readings  # the window holds only the last 128 images
    drift = card["drift"]
    assert drift["enabled"] and drift["window"] == WINDOW and drift["alert_psi"] == 0.25
    assert drift["streams"]["score"]["seen"] == 3 * WINDOW
    assert drift["streams"]["generate"]["window_images"] == WINDOW
    assert drift["streams"]["generate"]["psi"] < 0.25 and not _fires(metrics, "generate")
    assert _gauge(metrics, "ganserve_drift_window_images", "generate") == WINDOW
