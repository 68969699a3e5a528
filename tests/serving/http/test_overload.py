"""Overload over real HTTP: a burst far beyond what the queue may hold is answered 503 at once
with Retry-After (no request waits to time out, nothing is a 500), and the server answers
normally, with the same bytes for the same seed, once the burst has passed. The figures at 4x
the sustainable rate are benchmarks/server/overload.py's (results/overload.json)."""

import asyncio

import httpx
import pytest

from tests.conftest import ganserve_serve, make_release

pytestmark = pytest.mark.slow
BURST = 40  # requests of 64 images each: about 8 s of this model's work against a 1 s queue


@pytest.fixture(scope="module")
def heavy_model(tmp_path_factory):
    """A 64x64 RGB dcgan at width 32: a request of 64 images costs a fraction of a second."""
    from export.exporter import ExportOptions, export_model

    root = tmp_path_factory.mktemp("heavy")
    release = make_release(root / "run", resolution=64, channels=3, width=32)
    export_model(release, ExportOptions(out=root / "model", calibration_samples=20))
    return root / "model"


async def _burst(base: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=BURST)) as client:
        return await asyncio.gather(*(client.post(base + "/generate", json={"seed": seed, "n": 64})
                                      for seed in range(BURST)))


def test_a_burst_past_the_queue_is_refused_at_once_and_the_server_recovers(heavy_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GANSERVE_MAX_QUEUE_SECONDS", "1")
    with ganserve_serve(heavy_model, tmp_path, "--workers", "1", "--threads", "1") as base:
        # one run first, so the queue has a measured rate to refuse by
        assert httpx.post(base + "/generate", json={"seed": 0, "n": 64}, timeout=60).status_code == 200
        reference = httpx.post(base + "/generate", json={"seed": 5}, timeout=60).content

        responses = asyncio.run(_burst(base))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        refused = [r for r in responses if r.status_code == 503]
        assert len(refused) >= BURST // 2 and statuses.count(200) >= 1, statuses
        for response in refused:
            assert int(response.headers["Retry-After"]) >= 1
            assert "GANSERVE_MAX_QUEUE_SECONDS" in response.json()["error"]

        assert httpx.get(base + "/readyz", timeout=10).status_code == 200
        for _ in range(5):
            again = httpx.post(base + "/generate", json={"seed": 5}, timeout=60)
            assert again.status_code == 200 and again.content == reference
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and "503" in log  # each refusal is one line, not a traceback
