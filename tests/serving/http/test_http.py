"""The HTTP routes through a test client: every user mistake is a 4xx that says what to do.
(The same app inside a real `bentoml serve` process: test_server.py.)"""

import dataclasses
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from serving.engine import Engine
from serving.formats.images import encode_png
from serving.http.app import Serving, create_app
from serving.requests import generate_request
from serving.settings import Settings


def settings_for(model_dir, **changes) -> Settings:
    return dataclasses.replace(Settings.from_env(), model=str(model_dir), max_body_bytes=2 * 1024 * 1024,
                               **changes)


@pytest.fixture(scope="module")
def serving(model_dir):
    serving = Serving(settings_for(model_dir, max_batch=64, threads=1))
    serving.start()
    return serving


@pytest.fixture(scope="module")
def client(serving):
    with TestClient(create_app(serving)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, warmup=False)


def _post(client, route, body):
    return client.post(route, content=body if isinstance(body, bytes) else json.dumps(body),
                       headers={"content-type": "application/json"})


def test_model_card(client):
    card = client.post("/model").json()
    assert card["name"] == "tiny" and card["provider"] == "CPUExecutionProvider"
    assert card["image"] == {"height": 8, "width": 8, "channels": 1, "dtype": "uint8", "layout": "NHWC"}


def test_generate_one_png_with_seed_headers(client, engine):
    response = _post(client, "/generate", {"seed": 42})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-seeds"] == "42" and response.headers["x-model-version"]
    assert response.content == encode_png(engine.generate([42])[0])


def test_generate_formats(client, engine):
    expected = engine.generate([7, 8, 9])
    npy = np.load(io.BytesIO(_post(client, "/generate", {"seeds": [7, 8, 9], "format": "npy"}).content))
    assert np.array_equal(npy, expected)
    archive = zipfile.ZipFile(io.BytesIO(_post(client, "/generate", {"seed": 7, "n": 3, "format": "zip"}).content))
    assert archive.namelist() == ["seed00000007.png", "seed00000008.png", "seed00000009.png"]
    assert archive.read("seed00000009.png") == encode_png(expected[2])
    body = _post(client, "/generate", {"seeds": [7, 8], "format": "json"}).json()
    assert body["seeds"] == [7, 8] and body["model"]["name"] == "tiny" and len(body["images"]) == 2
    grid = Image.open(io.BytesIO(_post(client, "/generate", {"seed": 0, "n": 4}).content))
    assert grid.size == (2 * 9 + 1, 2 * 9 + 1)  # 2x2 tiles of 8 px with 1 px borders


def test_omitted_seed_is_random_and_returned(client):
    first = _post(client, "/generate", {"n": 2}).headers["x-seeds"].split(",")
    assert int(first[1]) == int(first[0]) + 1


@pytest.mark.parametrize("body,status,message", [
    (b"{bad json", 400, "body: not valid JSON"),
    ({"n": 10**9}, 400, "n: 1000000000 is not allowed"),
    (b'{"truncation": NaN}', 400, "truncation: NaN is not allowed"),
    ({"seed": -1}, 400, "seed: -1 is not allowed"),
    ({"seed": 2**63}, 400, "seed: 9223372036854775808 is not allowed"),
    ({"seeds": [1, -5]}, 400, "seeds[1]: -5 is not allowed; seeds are integers from 0 to 2**63-1"),
    ({"seed": 2**63 - 1, "n": 2}, 400, "passes the largest seed"),
    ({"class_label": 1}, 400, "class_label: this model is unconditional"),
    ({"labels": [1]}, 400, "labels: this model is unconditional"),
    ({"format": "gif"}, 400, "format: \"gif\" is not allowed"),
    ({"seeds": [1, 2], "n": 3}, 400, "n: 3 does not match the 2 seeds"),
    ({"seeds": list(range(65))}, 400, "seeds"),
    ({"sead": 5}, 400, "sead: not a field of /generate; its fields are class_label, drs_accept"),
])
def test_generate_user_errors_are_400_with_field_and_value(client, body, status, message):
    response = _post(client, "/generate", body)
    assert response.status_code == status
    assert message in response.json()["error"]


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge image, with a tiny body: decoding must not be tried."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_score_round_trip(client, engine):
    png = encode_png(engine.generate([3])[0])
    response = client.post("/score", files=[("images", ("a.png", png, "image/png")),
                                            ("images", ("b.png", png, "image/png"))])
    results = response.json()["results"]
    assert response.status_code == 200 and len(results) == 2
    expected = engine.score(engine.generate([3]))[1][0]
    assert results[0]["p_real"] == pytest.approx(float(expected), abs=1e-6)


def test_score_uint8_array(client, engine):
    buffer = io.BytesIO()
    np.save(buffer, engine.generate([1, 2]))
    response = client.post("/score", files=[("array", ("x.npy", buffer.getvalue(), "application/octet-stream"))])
    assert response.status_code == 200 and len(response.json()["results"]) == 2


@pytest.mark.parametrize("files,data,message", [
    ([("images", ("t.png", b"\x89PNG\r\n\x1a\n\0\0", "image/png"))], None, "images[0]: not a readable PNG"),
    ([("images", ("huge.png", _png_claiming(20000, 20000), "image/png"))], None,
     "is too large; at most 16777216 pixels"),
    ([("images", ("wide.png", _png_claiming(5000, 5000), "image/png"))], None, "5000x5000: the image is too large"),
    ([("images", ("big.png", encode_png(np.zeros((9, 9, 1), np.uint8)), "image/png"))], None,
     "got a 9x9 L image; the model scores 8x8 grayscale"),
    ([("images", ("rgb.png", encode_png(np.zeros((8, 8, 3), np.uint8)), "image/png"))], None, "8x8 RGB image"),
    ([("array", ("x.npy", b"not npy", "application/octet-stream"))], None, "array: not a readable .npy"),
    ([("images", ("a.png", encode_png(np.zeros((8, 8, 1), np.uint8)), "image/png"))], {"labels": "[1]"},
     "labels: this model is unconditional"),
])
def test_score_user_errors_are_400(client, files, data, message):
    response = client.post("/score", files=files, data=data)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_score_resize_converts_other_sizes(client):
    png = encode_png(np.full((30, 20, 3), 200, np.uint8))
    response = client.post("/score", files=[("images", ("a.png", png, "image/png"))], data={"resize": "true"})
    assert response.status_code == 200


def test_text_where_a_file_is_expected_is_400(client):
    response = client.post("/score", files=[("images", (None, "http://127.0.0.1:1/x.png"))])
    assert response.status_code == 400 and "expected an uploaded file" in response.json()["error"]


def test_score_takes_multipart_only(client):
    response = _post(client, "/score", {})
    assert response.status_code == 415 and "/score takes multipart/form-data" in response.json()["error"]
    empty = client.post("/score", files=[("resize", (None, "true"))])
    assert empty.status_code == 400 and "images: send PNG/JPEG files" in empty.json()["error"]


def test_oversized_body_is_413(client):
    response = client.post("/score", files=[("images", ("a.png", b"\0" * (3 * 1024 * 1024), "image/png"))])
    assert response.status_code == 413 and "GANSERVE_MAX_BODY_BYTES" in response.json()["error"]


def test_generate_with_rejection_sampling_reports_its_cost(client, engine):
    response = _post(client, "/generate", {"seeds": [4, 5], "keep_top": 0.25, "format": "json"})
    body = response.json()
    assert response.headers["x-candidates-drawn"] == "8" and response.headers["x-acceptance-rate"] == "0.25"
    assert body["candidates_drawn"] == 8 and len(body["images"]) == 2
    expected = engine.sample(generate_request(engine.card, seeds=[4, 5], keep_top=0.25)).images
    npy = np.load(io.BytesIO(_post(client, "/generate", {"seeds": [4, 5], "keep_top": 0.25, "format": "npy"}).content))
    assert np.array_equal(npy, expected)
    assert _post(client, "/generate", {"seed": 1, "keep_top": 0}).status_code == 400


def test_interpolate_strip_and_gif(client, engine):
    strip = Image.open(io.BytesIO(_post(client, "/interpolate", {"seed_from": 3, "seed_to": 8, "frames": 5}).content))
    assert strip.size == (5 * 9 + 1, 9 + 1)
    first = np.asarray(strip)[1:9, 1:9]
    assert np.array_equal(first, engine.generate([3])[0][:, :, 0])
    gif = Image.open(io.BytesIO(_post(client, "/interpolate", {"seed_from": 3, "seed_to": 8, "frames": 7,
                                                               "format": "gif"}).content))
    assert gif.format == "GIF" and gif.n_frames == 7
    for body, message in (({"seed_from": 1, "seed_to": 2, "frames": 1}, "frames: 1 is not allowed"),
                          ({"seed_from": 1, "seed_to": 2, "class_label": 0}, "class_label: this model is uncond"),
                          ({"seed_from": 1, "seed_to": 2, "label_to": 1}, "label_to: this model is unconditional"),
                          ({"seed_from": 1}, "seed_to")):
        response = _post(client, "/interpolate", body)
        assert response.status_code == 400 and message in response.json()["error"]


def test_generate_with_discriminator_rejection_sampling(client, engine):
    body = _post(client, "/generate", {"seeds": [4, 5, 6], "drs_accept": 0.25, "format": "json"}).json()
    assert len(body["images"]) == 3 and body["candidates_drawn"] >= 3
    npy = np.load(io.BytesIO(_post(client, "/generate", {"seeds": [4, 5, 6], "drs_accept": 0.25,
                                                         "format": "npy"}).content))
    assert np.array_equal(npy, engine.sample(generate_request(engine.card, seeds=[4, 5, 6], drs_accept=0.25)).images)
    both = _post(client, "/generate", {"seed": 1, "drs_accept": 0.5, "keep_top": 0.5})
    assert both.status_code == 400 and "not both" in both.json()["error"]

