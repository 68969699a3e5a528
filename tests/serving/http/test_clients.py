"""Clients nobody here wrote, against a real `ganserve serve` with API keys on: Triton's
`tritonclient.http`, KServe's v2 REST client (in its own environment: its dependencies would
pin the project's), and BentoML's own SyncHTTPClient and AsyncHTTPClient. Each gets the pixels
that /generate gives for the same seeds."""

import asyncio
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.formats.images import encode_png
from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow
KEY = "client-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}  # tritonclient adds its own headers to the dict it is given: pass copies
KSERVE_PYTHON = Path(os.environ.get("GANSERVE_KSERVE_PYTHON", Path(__file__).parents[3] / ".venv-kserve/bin/python"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("clients")
    (work / "keys").write_text(KEY + "\n")
    with ganserve_serve(model_dir, work, "--workers", "1", "--api-key-file", str(work / "keys")) as base:
        yield base


def _native(base: str, seeds: list[int]) -> np.ndarray:
    response = httpx.post(f"{base}/generate", json={"seeds": seeds, "format": "npy"}, headers=AUTH)
    return np.load(io.BytesIO(response.content))


def test_tritonclient_gets_the_same_pixels_as_generate(server, model_dir):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()  # the protocol's probes need no key
    assert client.is_model_ready("tiny", headers=dict(AUTH))
    metadata = client.get_model_metadata("tiny", headers=dict(AUTH))
    assert metadata["outputs"] == [{"name": "IMAGE", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    seeds = triton.InferInput("SEED", [4], "INT64")
    seeds.set_data_from_numpy(np.array([11, 12, 13, 14], np.int64), binary_data=True)
    result = client.infer("tiny", [seeds], outputs=[triton.InferRequestedOutput("IMAGE", binary_data=True)],
                          headers=dict(AUTH))
    images = result.as_numpy("IMAGE")
    assert images.dtype == np.uint8 and images.tobytes() == _native(server, [11, 12, 13, 14]).tobytes()
    pictures = triton.InferInput("IMAGE", list(images.shape), "UINT8")
    pictures.set_data_from_numpy(images, binary_data=True)
    scored = client.infer("tiny.discriminator", [pictures], headers=dict(AUTH))
    native = httpx.post(f"{server}/score", files=[("array", ("a.npy", _npy(images)))], headers=AUTH).json()
    assert np.allclose(scored.as_numpy("P_REAL"), [r["p_real"] for r in native["results"]], atol=1e-6)
    with pytest.raises(InferenceServerException, match="this server needs an API key"):
        client.infer("tiny", [seeds])


@pytest.mark.skipif(not KSERVE_PYTHON.is_file(), reason=f"KServe's client is not installed at {KSERVE_PYTHON} "
                                                         "(make test sets up .venv-kserve)")
def test_kserve_v2_rest_client_gets_the_same_pixels_as_generate(server):
    script = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

async def main(base, key):
    headers = {"Authorization": "Bearer " + key}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
        live, ready = await client.is_server_live(base), await client.is_server_ready(base)
        model_ready = await client.is_model_ready(base, "tiny", headers=headers)
        seeds = InferInput("SEED", [3], "INT64")
        seeds.set_data_from_numpy(np.array([21, 22, 23], np.int64), binary_data=True)
        request = InferRequest("tiny", [seeds], request_outputs=[RequestedOutput("IMAGE", {"binary_data": True})])
        response = await client.infer(base, request, model_name="tiny", headers=headers)
        image = response.get_output_by_name("IMAGE").as_numpy()
        print(json.dumps({"live": live, "ready": ready, "model_ready": model_ready, "dtype": str(image.dtype),
                          "shape": list(image.shape), "bytes": image.tobytes().hex()}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
    run = subprocess.run([str(KSERVE_PYTHON), "-c", script, server, KEY], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    assert answer["dtype"] == "uint8" and answer["shape"] == [3, 8, 8, 1]
    assert bytes.fromhex(answer["bytes"]) == _native(server, [21, 22, 23]).tobytes()


def test_bentomls_own_client_calls_every_route(server, tmp_path):
    import bentoml

    with bentoml.SyncHTTPClient(server, token=KEY) as client:
        assert set(client.endpoints) >= {"generate", "score", "interpolate", "model"}
        png = Path(client.generate(seed=7)).read_bytes()
        grid = np.load(client.generate(seeds=[7, 8], format="npy"))
        archive = zipfile.ZipFile(client.generate(seeds=[7, 8], format="zip"))
        (tmp_path / "seven.png").write_bytes(png)
        scored = client.score(images=[tmp_path / "seven.png"], resize=True)
        strip = Path(client.interpolate(seed_from=7, seed_to=8, frames=3)).read_bytes()
        card = client.model()
        with pytest.raises(bentoml.exceptions.BentoMLException, match="seed: -1 is not allowed"):
            client.generate(seed=-1)
    native = _native(server, [7, 8])
    assert png == encode_png(native[0]) and np.array_equal(grid, native)
    assert archive.read("seed00000008.png") == encode_png(native[1])
    expected = httpx.post(f"{server}/score", files=[("images", ("seven.png", png, "image/png"))], headers=AUTH)
    assert scored["results"][0]["p_real"] == expected.json()["results"][0]["p_real"]
    assert strip == httpx.post(f"{server}/interpolate", json={"seed_from": 7, "seed_to": 8, "frames": 3},
                               headers=AUTH).content
    assert card["name"] == "tiny" and card["served_as"]["name"] == "tiny"

    async def asynchronous():
        async with bentoml.AsyncHTTPClient(server, token=KEY) as client:
            return Path(await client.generate(seed=7)).read_bytes()

    assert asyncio.run(asynchronous()) == png
    with pytest.raises(bentoml.exceptions.BentoMLException, match="schema"):
        bentoml.SyncHTTPClient(server)  # no key: the schema, like every route, is refused


def _npy(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()
