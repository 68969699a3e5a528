"""The Open Inference Protocol (KServe v2) over REST: the body codec, and the routes through a
test client, held to the native routes' bytes and rules. (Clients nobody here wrote, against a
real server: test_clients.py.)"""

import dataclasses
import io
import json

import numpy as np
import pytest
from starlette.testclient import TestClient

from serving.engine import Engine
from serving.formats import oip
from serving.http.app import Serving, create_app
from serving.settings import Settings
from tests.serving.versions import two_models


def _binary_request(inputs: dict[str, np.ndarray], outputs=None, **extra) -> tuple[bytes, dict]:
    """A request in the binary tensor data extension, as tritonclient builds one."""
    names = {np.dtype(np.int64): "INT64", np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}
    header = {"inputs": [{"name": name, "shape": list(array.shape), "datatype": names[array.dtype],
                          "parameters": {"binary_data_size": array.nbytes}} for name, array in inputs.items()],
              **({"outputs": outputs} if outputs else {}), **extra}
    text = json.dumps(header).encode()
    return text + b"".join(a.tobytes() for a in inputs.values()), {oip.HEADER_LENGTH: str(len(text)),
                                                                   "content-type": "application/octet-stream"}


def _outputs(response) -> dict[str, np.ndarray]:
    """A response's tensors, JSON or binary."""
    length = int(response.headers.get(oip.HEADER_LENGTH, len(response.content)))
    header, blob = json.loads(response.content[:length]), response.content[length:]
    arrays, offset = {}, 0
    for output in header["outputs"]:
        dtype = oip.DATATYPES[output["datatype"]]
        if "data" in output:
            arrays[output["name"]] = np.asarray(output["data"], dtype).reshape(output["shape"])
        else:
            size = output["parameters"]["binary_data_size"]
            arrays[output["name"]] = np.frombuffer(blob[offset:offset + size], dtype).reshape(output["shape"])
            offset += size
    return arrays


# --- the codec -----------------------------------------------------------------------------------

def test_a_binary_request_is_read_into_arrays_of_its_shape():
    body, headers = _binary_request({"SEED": np.array([[3], [4]], np.int64)},
                                    [{"name": "IMAGE", "parameters": {"binary_data": True}}])
    request = oip.parse_request(body, headers[oip.HEADER_LENGTH])
    assert request.inputs["SEED"].array.tolist() == [[3], [4]] and request.outputs == {"IMAGE": True}


def test_json_data_may_be_flat_or_nested():
    for data in ([1, 2, 3, 4], [[1, 2], [3, 4]]):
        body = json.dumps({"inputs": [{"name": "X", "shape": [2, 2], "datatype": "UINT8", "data": data}]}).encode()
        assert oip.parse_request(body, None).inputs["X"].array.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("body, says", [
    ({"inputs": [{"name": "X", "shape": [2], "datatype": "UINT8", "data": [1, 300]}]},
     "X: data must be integers from 0 to 255 for datatype UINT8"),
    ({"inputs": [{"name": "X", "shape": [-1], "datatype": "INT64", "data": [1]}]}, "X: shape [-1] is not allowed"),
    ({"inputs": [{"name": "X", "shape": [1], "datatype": "STRING", "data": ["a"]}]},
     'X: datatype "STRING" is not allowed; use one of BOOL, UINT8'),
    ({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64"}]}, "X: no data; give data, or binary data"),
    ({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64", "data": [1]}], "extra": 1},
     "extra: not a field of an infer request"),
    ({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64", "data": [1], "contents": {}}]},
     "inputs[0].contents: not a field of a tensor"),
    ({"inputs": [{"name": "X", "shape": [1], "datatype": "INT64", "data": [[[[[[[[[1]]]]]]]]]}]},
     "X: data is nested deeper than a tensor's rank"),
])
def test_a_malformed_request_names_what_is_wrong(body, says):
    with pytest.raises(oip.ProtocolError, match=says.replace("[", r"\[").replace("(", r"\(")):
        oip.parse_request(json.dumps(body).encode(), None)


def test_binary_sizes_must_match_the_shapes():
    body, headers = _binary_request({"X": np.zeros(4, np.uint8)})
    with pytest.raises(oip.ProtocolError, match="the body ends 2 bytes short"):
        oip.parse_request(body[:-2], headers[oip.HEADER_LENGTH])
    with pytest.raises(oip.ProtocolError, match="3 bytes after the tensors"):
        oip.parse_request(body + b"abc", headers[oip.HEADER_LENGTH])
    with pytest.raises(oip.ProtocolError, match="Inference-Header-Content-Length: '99999' is not allowed"):
        oip.parse_request(body, "99999")


# --- the routes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(model_dir, other_model_dir, tmp_path_factory):
    repo = two_models(tmp_path_factory.mktemp("oip") / "repo", model_dir, other_model_dir)
    settings = dataclasses.replace(Settings.from_env(), model=str(repo), threads=1, poll_seconds=0)
    serving = Serving(settings)
    serving.start()
    with TestClient(create_app(serving)) as test_client:
        yield test_client


def test_health_and_metadata(client):
    from importlib.metadata import version

    import serving

    assert serving.__version__ == version("ganserve")  # one version: pyproject.toml reads serving/__init__.py
    assert client.get("/v2").json() == {"name": "ganserve", "version": serving.__version__,
                                        "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    generator = client.get("/v2/models/faces").json()
    assert generator["inputs"] == [{"name": "SEED", "datatype": "INT64", "shape": [-1]}]
    assert generator["outputs"] == [{"name": "IMAGE", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    assert generator["versions"] == ["1", "2"] and generator["served_version"] == "2"
    discriminator = client.get("/v2/models/faces.discriminator").json()
    assert [o["name"] for o in discriminator["outputs"]] == ["LOGIT", "P_REAL"]
    assert client.get("/v2/models/faces/ready").status_code == 200
    assert client.get("/v2/models/faces/versions/1/ready").status_code == 400  # not the live version
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_image_is_byte_identical_to_generate_npy_in_json_and_binary(client):
    native = client.post("/models/faces/generate", json={"seeds": [5, 6, 7], "format": "npy"})
    expected = np.load(io.BytesIO(native.content))
    as_json = client.post("/v2/models/faces/infer", json={"id": "r1", "inputs": [
        {"name": "SEED", "shape": [3], "datatype": "INT64", "data": [5, 6, 7]}]})
    body, headers = _binary_request({"SEED": np.array([5, 6, 7], np.int64)},
                                    [{"name": "IMAGE", "parameters": {"binary_data": True}}])
    as_binary = client.post("/v2/models/faces/infer", content=body, headers=headers)
    assert as_json.headers["content-type"] == "application/json" and as_json.json()["id"] == "r1"
    assert as_json.json()["model_version"] == "2" and as_json.headers["x-model-version"] == "2"
    assert as_binary.headers["content-type"] == "application/octet-stream"
    for response in (as_json, as_binary):
        image = _outputs(response)["IMAGE"]
        assert image.dtype == np.uint8 and image.tobytes() == expected.tobytes()


def test_generation_parameters_are_the_native_fields(client):
    native = client.post("/models/faces/generate", json={"seeds": [9], "truncation": 0.5, "keep_top": 0.25,
                                                         "format": "npy"})
    body = {"inputs": [{"name": "SEED", "shape": [1, 1], "datatype": "INT64", "data": [[9]]}],
            "parameters": {"truncation": 0.5, "keep_top": 0.25}}
    guided = _outputs(client.post("/v2/models/faces/infer", json=body))["IMAGE"]
    assert guided.tobytes() == np.load(io.BytesIO(native.content)).tobytes()


def test_the_discriminator_scores_as_score_does(client, other_model_dir):
    images = Engine(other_model_dir, warmup=False).generate([1, 2])
    logits, p_real = Engine(other_model_dir, warmup=False).score(images)
    body, headers = _binary_request({"IMAGE": images})
    scored = _outputs(client.post("/v2/models/faces.discriminator/infer", content=body, headers=headers))
    assert np.allclose(scored["LOGIT"], logits, atol=1e-6) and np.allclose(scored["P_REAL"], p_real, atol=1e-6)


@pytest.mark.parametrize("path, body, status, says", [
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [-1]}]}, 400,
     "SEED[0]: -1 is not allowed; seeds are integers from 0 to 2**63-1"),
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT32", "data": [1]}]}, 400,
     "SEED: datatype INT32 is not allowed; use INT64"),
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [65], "datatype": "INT64",
                                            "data": list(range(65))}]}, 400,
     "SEED: 65 values is more than the limit of 64"),
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [1]}],
                                "parameters": {"keep_tops": 0.5}}, 400,
     "parameters.keep_tops: not a parameter of this model; its parameters are truncation, keep_top"),
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [1]},
                                           {"name": "LABEL", "shape": [1], "datatype": "INT64", "data": [1]}]}, 400,
     "LABEL: not an input of this model; its inputs are SEED"),
    ("/v2/models/faces/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [1]}],
                                "outputs": [{"name": "PNG"}]}, 400, "outputs: 'PNG' is not an output of this model"),
    ("/v2/models/faces.discriminator/infer", {"inputs": [{"name": "IMAGE", "shape": [1, 4, 4, 1],
                                                          "datatype": "UINT8", "data": [0] * 16}]}, 400,
     "IMAGE: got uint8 [1, 4, 4, 1]; the model scores uint8 images of shape [N, 8, 8, 1]"),
    ("/v2/models/nope/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [1]}]}, 404,
     "model 'nope' is not served here"),
    ("/v2/models/faces/versions/1/infer", {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64",
                                                       "data": [1]}]}, 409, "'1' of model 'faces' is not live"),
])
def test_mistakes_are_4xx_in_the_protocols_shape(client, path, body, status, says):
    response = client.post(path, json=body)
    assert response.status_code == status and set(response.json()) == {"error"}
    assert says in response.json()["error"]
