"""Hostile and malformed input against a real `ganserve serve` process: each case is a 4xx
that names the problem, never a 5xx, and the server answers normally afterwards. (The
schema-driven fuzzer in test_fuzz.py covers what this hand list does not think of.)"""

import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow
BOUNDARY = "XyZ"


@pytest.fixture(scope="module")
def base(model_dir, tmp_path_factory):
    with ganserve_serve(model_dir, tmp_path_factory.mktemp("hostile"), "--workers", "1") as url:
        yield url


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 7).save(buffer, format=fmt)
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
JSON = {"content-type": "application/json"}
PNG_8X8 = _image("PNG")

CASES = [
    # (route, headers, body, status, words the error must hold)
    *[(route, {"content-type": "multipart/form-data"}, b"--x\r\n\r\n--x--", status, words)
      for route, status, words in (("/generate", 415, "takes a JSON object"), ("/interpolate", 415, "JSON object"),
                                   ("/model", 415, "JSON object"), ("/score", 400, "without a boundary"))],
    ("/score", MULTIPART, f"--{BOUNDARY}\r\n\r\n[]--{BOUNDARY}--".encode(), 400, "images: send PNG/JPEG"),
    ("/score", MULTIPART, f"--{BOUNDARY}\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(), 400, "no Content-Disposition"),
    ("/score", MULTIPART, _multipart(("image", "x.png", PNG_8X8)), 400, "image: not a field of /score"),
    ("/score", MULTIPART, _multipart(("images", "x.png", PNG_8X8), ("colour", None, b"red")), 400,
     "colour: not a field of /score"),
    ("/score", MULTIPART, b"garbage without any boundary", 400, "not readable multipart/form-data"),
    ("/score", JSON, b"{}", 415, "/score takes multipart/form-data"),
    ("/generate", {"content-type": "application/x-www-form-urlencoded"}, b"sead=3", 415, "takes a JSON object"),
    ("/generate", {"content-type": "text/plain"}, b'{"n": 2, "sead": 3}', 400, "sead: not a field"),
    ("/generate", JSON, b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("/generate", JSON, b'{"seed": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
    ("/generate", JSON, b'{"seed": 1e400}', 400, "seed"),
    ("/generate", JSON, b'{"n": 1.5}', 400, "n"),
    ("/generate", JSON, b"\xff\xfe{\x00}", 400, "not valid JSON"),
    ("/generate", JSON, json.dumps({"seeds": list(range(65))}).encode(), 400, "seeds"),
    ("/generate", JSON, b'"just a string"', 400, "expected a JSON object"),
    ("/interpolate", JSON, b'{"seed_from": 1, "seed_to": 2, "frames": 100000}', 400, "frames: 100000"),
    ("/score", MULTIPART, _multipart(("images", "bomb.png", _png_claiming(50_000, 50_000))), 400, "too large"),
    ("/score", MULTIPART, _multipart(("images", "lie.png", b"\x89PNG\r\n\x1a\n" + _image("JPEG")[2:])), 400,
     "images[0]"),
    ("/score", MULTIPART, _multipart(("images", "lie.png", _png_claiming(8, 8)[:40])), 400, "images[0]"),
    *[("/score", MULTIPART, _multipart(("images", f"x.{fmt.lower()}", _image(fmt))), 400,
       f"{name} images are not accepted") for fmt, name in (("GIF", "GIF"), ("TIFF", "TIFF"), ("WEBP", "WebP"))],
    ("/score", MULTIPART, _multipart(("images", "x.txt", b"just some text\n")), 400, "not a PNG or JPEG image"),
    ("/score", MULTIPART, _multipart(("array", "x.npy", _npy(np.zeros((1, 8, 8, 1), np.float64)))), 400, "array"),
    ("/score", MULTIPART, _multipart(("array", "x.npy", _npy(np.array([None, 1], dtype=object)))), 400, "array"),
    ("/score", MULTIPART, _multipart(("array", "x.npy", _npy(np.zeros((8, 8), np.uint8)))), 400, "array"),
    ("/score", MULTIPART, _multipart(("array", "x.npy", _npy(np.zeros((0, 8, 8, 1), np.uint8)))), 400, "array"),
]


@pytest.mark.parametrize("route,headers,body,status,words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_hostile_input_is_a_4xx_that_names_the_problem(base, route, headers, body, status, words):
    response = httpx.post(base + route, content=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert words in error and "object at 0x" not in error
    assert httpx.post(base + "/generate", json={"seed": 1}, timeout=30).status_code == 200  # still serving


def test_a_body_past_the_limit_is_413_whether_declared_or_streamed(base):
    big = b"\0" * (33 * 1024 * 1024)
    declared = httpx.post(base + "/score", content=big, headers=MULTIPART, timeout=60)
    assert declared.status_code == 413 and "GANSERVE_MAX_BODY_BYTES" in declared.json()["error"]

    def chunks():
        for _ in range(33):
            yield b"\0" * (1024 * 1024)
    streamed = httpx.post(base + "/generate", content=chunks(), headers=JSON, timeout=60)
    assert streamed.status_code == 413
    assert httpx.post(base + "/generate", json={"seed": 1}, timeout=30).status_code == 200


def test_the_seed_limit_itself_is_allowed(base):
    response = httpx.post(base + "/generate", json={"seeds": list(range(64)), "format": "npy"}, timeout=60)
    assert response.status_code == 200 and np.load(io.BytesIO(response.content)).shape[0] == 64


def test_user_mistakes_are_one_log_line_not_a_traceback(base, model_dir, tmp_path_factory):
    httpx.post(base + "/generate", json={"sead": 1})
    log = next(tmp_path_factory.getbasetemp().glob("hostile*/server.log")).read_text()
    assert "400" in log and "sead: not a field" in log
    assert "Traceback" not in log and "[ERROR]" not in log
