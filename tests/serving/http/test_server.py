"""One real `ganserve serve` (bentoml serve) process: the HTTP bytes equal the CLI's bytes,
generate -> score round trip, metrics, and 256 concurrent clients without an error."""

import asyncio
import io
import os
import re
import zipfile

import httpx
import pytest

from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with ganserve_serve(model_dir, tmp_path_factory.mktemp("server")) as base:
        yield base


def test_http_bytes_equal_cli_bytes_for_the_same_seeds(server, model_dir, tmp_path):
    from serving.cli import main

    assert main(["sample", str(model_dir), "--seeds", "5-7", "--out", str(tmp_path), "--no-progress",
                 "--workers", "1"]) == 0
    response = httpx.post(server + "/generate", json={"seeds": [5, 6, 7], "format": "zip"}, timeout=30)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    for seed in (5, 6, 7):
        name = f"seed{seed:08d}.png"
        assert archive.read(name) == (tmp_path / name).read_bytes()
    single = httpx.post(server + "/generate", json={"seed": 6}, timeout=30)
    assert single.content == (tmp_path / "seed00000006.png").read_bytes()


def test_once_ready_every_worker_answers(server):
    """The server runs a worker per core (2 here); /readyz was 200, so none may still be loading."""
    assert all(httpx.post(server + "/model", timeout=10).status_code == 200 for _ in range(40))


def test_readiness_waits_for_every_worker(monkeypatch):
    from serving.http import readiness

    monkeypatch.delenv(readiness.FOLDER_VARIABLE, raising=False)
    readiness.start(worker_index=None)  # BentoML's own process: a fresh folder
    folder = os.environ[readiness.FOLDER_VARIABLE]
    assert not readiness.all_ready(2, worker_index=1)
    readiness.mark_ready(1)
    assert not readiness.all_ready(2, worker_index=1)
    readiness.mark_ready(2)
    assert readiness.all_ready(2, worker_index=1)
    readiness.start(worker_index=1)  # a worker keeps the folder it inherited
    assert os.environ[readiness.FOLDER_VARIABLE] == folder
    readiness.start(worker_index=None)  # the next server starts clean, whatever it inherited
    assert not readiness.all_ready(2, worker_index=1)
    assert readiness.all_ready(2, worker_index=None)  # the ASGI app outside a BentoML server


def test_generate_then_score_round_trip(server, model_dir):
    from serving.engine import Engine

    png = httpx.post(server + "/generate", json={"seed": 11}, timeout=30).content
    scored = httpx.post(server + "/score", files=[("images", ("g.png", png, "image/png"))], timeout=30).json()
    logits, p_real = Engine(model_dir, warmup=False).score(Engine(model_dir, warmup=False).generate([11]))
    assert scored["results"][0]["logit"] == pytest.approx(float(logits[0]), abs=1e-5)  # D's, on seed 11's pixels
    assert scored["results"][0]["p_real"] == pytest.approx(float(p_real[0]), abs=1e-6)
    assert httpx.get(server + "/livez", timeout=5).status_code == 200


def test_256_concurrent_clients_all_succeed_and_share_runs(server):
    async def hammer():
        limits = httpx.Limits(max_connections=256)
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as client:
            return await asyncio.gather(*[client.post("/generate", json={"seed": i}) for i in range(256)])

    responses = asyncio.run(hammer())
    assert [r.status_code for r in responses] == [200] * 256
    assert [r.headers["x-seeds"] for r in responses] == [str(i) for i in range(256)]
    metrics = httpx.get(server + "/metrics", timeout=10).text
    generated = re.search(r"^ganserve_images_generated_total(?:\{[^}]*\})? (\S+)", metrics, re.M)
    assert generated and float(generated.group(1)) >= 256
    runs = re.search(r'^ganserve_batch_size_count\{graph="generator"[^}]*\} (\S+)', metrics, re.M)
    images = re.search(r'^ganserve_batch_size_sum\{graph="generator"[^}]*\} (\S+)', metrics, re.M)
    assert runs and images
    assert float(images.group(1)) / float(runs.group(1)) > 1.5  # requests were batched together
    assert "ganserve_score_probability_bucket" in metrics
