"""New versions pushed into the repository of a real two-worker server while clients keep
asking: good and broken versions alternate, and no client ever sees an error or a version
that did not pass. Then an operator rolls back, through the admin route, in every worker."""

import random
import threading
import time

import httpx
import pytest

from tests.conftest import ganserve_serve
from tests.serving.versions import BROKEN, copy_version

pytestmark = pytest.mark.slow
API_KEY, ADMIN_KEY = "k" * 32, "a" * 32


def test_versions_swap_under_load_without_an_error_and_roll_back_everywhere(tmp_path, model_dir, other_model_dir):
    repo = tmp_path / "repo"
    (repo / "faces").mkdir(parents=True)
    copy_version(model_dir, repo / "digits")
    copy_version(model_dir, repo / "faces" / "1")
    (tmp_path / "api-keys").write_text(API_KEY + "\n")
    (tmp_path / "admin-keys").write_text(ADMIN_KEY + "\n")
    pushes = [("2", None), ("3", "damaged file"), ("4", None), ("5", "hand-edited card"), ("6", None),
              ("7", "constant generator"), ("8", "NaN generator"), ("9", None)]
    answers, stop = [], threading.Event()

    def client(base):
        with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{base}/models/faces/generate", json={"seed": random.randrange(2**31)})
                    answers.append((response.status_code, response.headers.get("x-model-version")))
                except httpx.HTTPError as error:
                    answers.append((type(error).__name__, None))

    with ganserve_serve(repo, tmp_path, "--workers", "2", "--poll-seconds", "0.3", "--api-key-file",
                        str(tmp_path / "api-keys"), "--admin-key-file", str(tmp_path / "admin-keys")) as base:
        threads = [threading.Thread(target=client, args=(base,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for version, broken in pushes:
            source = other_model_dir if int(version) % 2 else model_dir
            if broken:
                BROKEN[broken](source, repo / "faces" / version)
            else:
                copy_version(source, repo / "faces" / version)
            time.sleep(1.5)  # a few polls: every worker has gated it
        deadline = time.monotonic() + 60  # on a loaded machine the last version may take longer to go live
        while not any(version == "9" for _, version in answers[-20:]) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)
        back = admin.post("/admin/models/faces/rollback")
        as_client = httpx.post(f"{base}/admin/models/faces/rollback",
                               headers={"Authorization": f"Bearer {API_KEY}"})  # an API key is not an admin key
        admin_as_api = httpx.post(f"{base}/models/faces/generate", json={"seed": 1},
                                  headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        after = httpx.post(f"{base}/models/faces/generate", json={"seed": 1},
                           headers={"Authorization": f"Bearer {API_KEY}"})
        view = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()
        metrics = httpx.get(f"{base}/metrics").text

    statuses = {status for status, _ in answers}
    served = {version for _, version in answers}
    assert len(answers) > 50 and statuses == {200}, sorted(statuses, key=str)
    assert served <= {"1", "2", "4", "6", "9"} and "9" in served, served
    faces = next(m for m in view["models"] if m["name"] == "faces")
    refused = {v["version"]: v["refused"]["stage"] for v in faces["versions"] if v["state"] == "refused"}
    assert refused == {"3": "load", "5": "gate", "7": "gate", "8": "gate"}
    assert back.status_code == 200, back.text
    rollback = back.json()
    assert rollback["version"] == "6" and rollback["converged"] and set(rollback["workers"]) == {"1", "2"}
    assert all(worker["live"]["faces"] == "6" for worker in rollback["workers"].values())
    assert after.headers["x-model-version"] == "6" and faces["follows"] == "pinned to 6"
    assert as_client.status_code == 401 and admin_as_api.status_code == 401
    assert 'ganserve_model_live{model="faces",version="6"} 1.0' in metrics
    assert 'ganserve_model_versions_total{event="refused_gate",model="faces"}' in metrics
