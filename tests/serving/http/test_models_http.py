"""Several models over HTTP, through a test client: /models, the per-model and pinned routes,
new versions polled in or refused, and the admin routes. (The same against a real server,
with several workers and load: test_swap_under_load.py.)"""

import dataclasses
import io
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from serving.engine import Engine
from serving.http.app import Serving, create_app
from serving.settings import Settings
from tests.serving.versions import copy_version, damaged, nan_generator, two_models

ADMIN_KEY = "a" * 32


@pytest.fixture
def repo(tmp_path, model_dir, other_model_dir):
    return two_models(tmp_path / "repo", model_dir, other_model_dir)


def _client(repo, admin=False, **changes):
    settings = dataclasses.replace(Settings.from_env(), model=str(repo), threads=1, max_batch=64, poll_seconds=0.1,
                                   **changes)
    serving = Serving(settings)
    serving.start()
    if admin:
        serving.admin_keys = (ADMIN_KEY.encode(),)
    return TestClient(create_app(serving))


def _npy(response):
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def _wait_for(client, check, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        if check(models):
            return models
        time.sleep(0.05)
    pytest.fail(f"/models never showed it: {models}")


def test_models_lists_every_model_its_versions_and_the_live_one(repo):
    with _client(repo) as client:
        view = client.get("/models").json()
    assert view["default"] == "digits" and view["layout"] == "repository" and view["admin"] is False
    faces = next(m for m in view["models"] if m["name"] == "faces")
    assert faces["live"] == "2" and faces["loaded"] and faces["follows"] == "newest"
    assert [(v["version"], v["state"]) for v in faces["versions"]] == [("2", "live"), ("1", "not tried")]
    assert faces["card"]["image"] == {"height": 8, "width": 8, "channels": 1} and faces["card"]["has_discriminator"]
    assert faces["versions"][0]["gate"]["passed"] is True


def test_each_route_serves_the_model_its_path_names(repo, model_dir, other_model_dir):
    with _client(repo) as client:
        plain = client.post("/generate", json={"seeds": [3, 4], "format": "npy"})
        faces = client.post("/models/faces/generate", json={"seeds": [3, 4], "format": "npy"})
        pinned = client.post("/models/faces/versions/2/generate", json={"seeds": [3, 4], "format": "npy"})
        stale = client.post("/models/faces/versions/1/generate", json={"seed": 3})
        missing = client.post("/models/faces/versions/9/generate", json={"seed": 3})
        unknown = client.post("/models/nope/generate", json={"seed": 3})
        card = client.get("/models/faces/model").json()
        scored = client.post("/models/faces/score", files=[("images", ("a.png", b"", "image/png"))])
    assert np.array_equal(_npy(plain), Engine(model_dir, warmup=False).generate([3, 4]))
    assert (plain.headers["x-model-name"], plain.headers["x-model-version"]) == ("digits", "s1-" + plain.headers[
        "x-model-version"].split("-")[1])
    assert np.array_equal(_npy(faces), Engine(other_model_dir, warmup=False).generate([3, 4]))
    assert (faces.headers["x-model-name"], faces.headers["x-model-version"]) == ("faces", "2")
    assert np.array_equal(_npy(pinned), _npy(faces))
    assert stale.status_code == 409 and stale.json()["error"] == (
        "version: '1' of model 'faces' is not live; the live version is '2': pin it, or leave the version out")
    assert missing.status_code == 404 and "has no version '9' (versions: 1, 2)" in missing.json()["error"]
    assert unknown.status_code == 404 and "model 'nope' is not served here" in unknown.json()["error"]
    assert card["served_as"] == {"name": "faces", "version": "2"}
    assert scored.status_code == 400  # the model's own rules still apply under its path


def test_a_plain_model_folder_keeps_its_card_name_and_version(model_dir):
    with _client(model_dir) as client:
        response = client.post("/generate", json={"seed": 1})
        view = client.get("/models").json()
    card = Engine(model_dir, warmup=False).card
    assert (response.headers["x-model-name"], response.headers["x-model-version"]) == (card.name, card.version)
    assert view["layout"] == "model folder" and view["models"][0]["live"] == card.version


def test_a_new_version_is_polled_in_and_a_broken_one_refused_with_why(repo, model_dir):
    with _client(repo) as client:
        damaged(model_dir, repo / "faces" / "3")
        models = _wait_for(client, lambda m: m["faces"]["versions"][0] == {**m["faces"]["versions"][0],
                                                                           "version": "3", "state": "refused"})
        assert models["faces"]["live"] == "2"
        refused = models["faces"]["versions"][0]["refused"]
        assert refused["stage"] == "load" and "sha256 does not match model.json" in refused["reason"]
        assert client.post("/models/faces/generate", json={"seed": 1}).headers["x-model-version"] == "2"
        nan_generator(model_dir, repo / "faces" / "4")
        models = _wait_for(client, lambda m: m["faces"]["versions"][0] == {**m["faces"]["versions"][0],
                                                                           "version": "4", "state": "refused"})
        gate = models["faces"]["versions"][0]["refused"]["gate"]
        assert not gate["passed"] and gate["checks"][0]["name"] == "varies" and not gate["checks"][0]["passed"]
        copy_version(model_dir, repo / "faces" / "5")
        _wait_for(client, lambda m: m["faces"]["live"] == "5")
        response = client.post("/models/faces/generate", json={"seed": 1})
    assert response.headers["x-model-version"] == "5"
    counted = {event: REGISTRY.get_sample_value("ganserve_model_versions_total", {"model": "faces", "event": event})
               for event in ("refused_load", "refused_gate", "live")}
    assert counted["refused_load"] >= 1 and counted["refused_gate"] >= 1 and counted["live"] >= 2
    assert REGISTRY.get_sample_value("ganserve_model_live", {"model": "faces", "version": "5"}) == 1
    assert REGISTRY.get_sample_value("ganserve_model_live", {"model": "faces", "version": "2"}) == 0


def test_admin_routes_are_off_by_default(repo):
    with _client(repo) as client:
        response = client.post("/admin/models/faces/rollback")
    assert response.status_code == 404 and "admin operations are off; start the server with --admin-key-file" \
        in response.json()["error"]


def test_admin_load_and_rollback_need_the_admin_key_and_pin_the_version(repo, model_dir):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with _client(repo, admin=True) as client:
        assert client.post("/admin/models/faces/rollback").status_code == 401
        wrong = client.post("/admin/models/faces/rollback", headers={"Authorization": "Bearer " + "b" * 32})
        assert wrong.status_code == 401 and "admin key" in wrong.json()["error"]
        nothing_before = client.post("/admin/models/faces/rollback", headers=admin)
        assert nothing_before.status_code == 409 and "no earlier version" in nothing_before.json()["error"]
        loaded = client.post("/admin/models/faces/load", json={"version": 1}, headers=admin)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["outcome"] == "live" and loaded.json()["workers"]["1"]["live"]["faces"] == "1"
        copy_version(model_dir, repo / "faces" / "3")
        time.sleep(0.5)  # several polls: a pinned model does not take up version 3
        assert client.post("/models/faces/generate", json={"seed": 0}).headers["x-model-version"] == "1"
        back = client.post("/admin/models/faces/rollback", headers=admin).json()
        assert back["version"] == "2" and back["outcome"] == "live"
        damaged(model_dir, repo / "faces" / "4")
        refused = client.post("/admin/models/faces/load", json={"version": "4"}, headers=admin)
        assert refused.status_code == 409 and refused.json()["reason"].startswith("refused at load:")
        unknown = client.post("/admin/models/faces/load", json={"version": "8"}, headers=admin)
        assert unknown.status_code == 404
        newest = client.post("/admin/models/faces/load", headers=admin).json()  # follow the newest again
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert newest["version"] == "4" and newest["outcome"] == "refused"  # the newest is 4, refused...
    assert models["faces"]["live"] == "2" and models["faces"]["follows"] == "pinned to 2"  # ...so the pin holds
