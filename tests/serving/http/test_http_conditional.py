"""A real `ganserve serve` process with a class-conditional model: interpolation between
classes over HTTP (a process of its own: BentoML allows one app per process)."""

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.engine import Engine
from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow


def test_interpolate_between_classes_over_http(conditional_model_dir, tmp_path):
    with ganserve_serve(conditional_model_dir, tmp_path, "--workers", "1") as base:
        response = httpx.post(base + "/interpolate", json={"seed_from": 4, "seed_to": 4, "frames": 3,
                                                           "class_label": 0, "label_to": 2}, timeout=30)
        bad = httpx.post(base + "/interpolate", json={"seed_from": 4, "seed_to": 4, "label_to": 2}, timeout=30)
    assert response.status_code == 200
    strip = np.asarray(Image.open(io.BytesIO(response.content)))
    expected = Engine(conditional_model_dir, warmup=False).interpolate(4, 4, 3, label=0, label_to=2)
    assert all(np.array_equal(strip[1:9, 1 + 9 * i:9 + 9 * i], expected[i][:, :, 0]) for i in range(3))
    assert bad.status_code == 400 and "label_to: give the first frame's class too" in bad.json()["error"]
