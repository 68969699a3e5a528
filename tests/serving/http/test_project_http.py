"""POST /project on a real `ganserve serve`: the latent of G's own image comes back, and goes
into /generate and /interpolate; the same limits and 4xx rules as every route."""

import base64
import io
import re

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.engine import Engine
from serving.formats.images import encode_png
from serving.requests import generate_request
from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow


def _png(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def test_project_over_http(encoder_model_dir, tmp_path):
    with ganserve_serve(encoder_model_dir, tmp_path, "--workers", "1") as base:
        own = httpx.post(base + "/generate", json={"seeds": [30, 31], "format": "npy"}, timeout=30)
        images = np.load(io.BytesIO(own.content))
        files = [("images", (f"g{i}.png", encode_png(image), "image/png")) for i, image in enumerate(images)]
        answer = httpx.post(base + "/project", files=files, data={"rounds": "8"}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        latents = [result["latent"] for result in body["results"]]
        again = httpx.post(base + "/generate", json={"latents": latents, "format": "npy"}, timeout=30)
        walk = httpx.post(base + "/interpolate", json={"latent_from": latents[0], "latent_to": latents[1],
                                                       "frames": 3}, timeout=30)
        as_npy = httpx.post(base + "/project", files=files[:1], data={"format": "npy", "rounds": "8"}, timeout=60)
        errors = {
            "rounds": httpx.post(base + "/project", files=files, data={"rounds": "65"}, timeout=30),
            "budget": httpx.post(base + "/project", files=files, data={"rounds": "64", "candidates": "256"},
                                 timeout=30),
            "json": httpx.post(base + "/project", json={"images": []}, timeout=30),
            "latents": httpx.post(base + "/generate", json={"latents": [[0.0] * 3]}, timeout=30),
            "unknown": httpx.post(base + "/project", files=files, data={"steps": "3"}, timeout=30),
        }
        metrics = httpx.get(base + "/metrics", timeout=30).text
    assert answer.headers["X-Generator-Rows"] == str(2 * (1 + 8 * 32))
    assert body["search"] == {"rounds": 8, "candidates": 32, "generator_rows": 2 * (1 + 8 * 32)}
    for result, image in zip(body["results"], images):
        assert result["psnr_db"] >= result["psnr_encoder_db"] and result["psnr_db"] >= 25
        assert 0 < result["p_real"] < 1 and len(result["latent"]) == 16
        reconstruction = _png(base64.b64decode(result["reconstruction"]))[:, :, None]
        mse = ((reconstruction.astype(float) - image) ** 2).mean() / 255 ** 2
        assert mse == pytest.approx(result["mse"])
    # the latents generate the reconstructions again, byte for byte
    regenerated = np.load(io.BytesIO(again.content))
    for result, image in zip(body["results"], regenerated):
        assert np.array_equal(_png(base64.b64decode(result["reconstruction"]))[:, :, None], image)
    assert again.headers["X-Latents"] == "2"
    strip = _png(walk.content)
    assert walk.status_code == 200 and walk.headers["X-Seeds"] == "latent,latent"
    assert np.array_equal(strip[1:9, 1:9], regenerated[0][:, :, 0])  # the first frame: the first latent's image
    np.testing.assert_allclose(np.load(io.BytesIO(as_npy.content))[0], latents[0], rtol=1e-6)
    assert errors["rounds"].status_code == 400 and "rounds: 65 is not allowed" in errors["rounds"].json()["error"]
    assert errors["budget"].status_code == 400 and "runs of G per image" in errors["budget"].json()["error"]
    assert errors["json"].status_code == 415 and "/project takes multipart/form-data" in errors["json"].json()["error"]
    assert errors["latents"].status_code == 400
    assert "latents[0]: 3 numbers; this model's latents have 16" in errors["latents"].json()["error"]
    assert errors["unknown"].status_code == 400
    assert "steps: not a field of /project" in errors["unknown"].json()["error"]
    projected = re.search(r"^ganserve_images_projected_total(?:\{[^}]*\})? (\S+)", metrics, re.M)
    assert projected and float(projected.group(1)) == 3  # two images, then one


def test_a_model_without_an_encoder_answers_400_and_guards_against_copies(model_dir, tmp_path):
    engine = Engine(model_dir, warmup=False)
    similarity, _ = engine.nearest_training(engine.generate(list(range(16))))
    threshold = float(np.median(similarity))
    with ganserve_serve(model_dir, tmp_path, "--workers", "1") as base:
        image = np.load(io.BytesIO(httpx.post(base + "/generate", json={"seed": 1, "format": "npy"}).content))[0]
        answer = httpx.post(base + "/project", files=[("images", ("a.png", encode_png(image), "image/png"))],
                            timeout=30)
        card = httpx.get(base + "/model", timeout=30).json()
        guarded = httpx.post(base + "/generate", json={"seed": 0, "n": 16, "max_train_similarity": threshold,
                                                       "format": "json"}, timeout=60)
        refused = httpx.post(base + "/generate", json={"seed": 0, "keep_top": 0.5, "max_train_similarity": 0.9},
                             timeout=30)
    assert answer.status_code == 400 and "has no encoder" in answer.json()["error"]
    assert card["has_encoder"] is False and card["train_index"]["count"] == 20
    expected = engine.sample(generate_request(engine.card, seed=0, n=16, max_train_similarity=threshold))
    assert guarded.status_code == 200 and guarded.headers["X-Redrawn"] == str(expected.stats["redrawn"])
    body = guarded.json()
    assert body["redrawn"] == expected.stats["redrawn"] > 0
    assert body["train_similarity"] == expected.stats["train_similarity"]
    for png, image in zip(body["images"], expected.images):
        assert np.array_equal(_png(base64.b64decode(png))[:, :, None], image)
    assert refused.status_code == 400 and "max_train_similarity" in refused.json()["error"]
