"""A model folder whose files do not match model.json is never served: /readyz stays 503 and
requests get a 503 that says why (the CLI refuses it up front)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.cli import main
from tests.conftest import free_port, wait_for_ok


@pytest.fixture
def damaged_model(model_dir, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(model_dir, copy)
    data = bytearray((copy / "discriminator.onnx").read_bytes())
    data[100] ^= 0xFF
    (copy / "discriminator.onnx").write_bytes(bytes(data))
    return copy


@pytest.mark.slow
def test_service_refuses_a_model_whose_hash_does_not_match(damaged_model, tmp_path):
    port = free_port()
    bentoml = Path(sys.executable).parent / "bentoml"
    env = {**os.environ, "GANSERVE_MODEL": str(damaged_model), "BENTOML_HOME": str(tmp_path / "bentoml")}
    process = subprocess.Popen([str(bentoml), "serve", "serving.service:GanService", "--port", str(port),
                                "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ok(base + "/livez", process)
        # loading (and refusing) happens in a background thread: wait until it has refused
        deadline = time.monotonic() + 60
        while True:
            response = httpx.post(base + "/generate", json={"seed": 1}, timeout=5)
            if "cannot be served" in response.json()["error"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status_code == 503
        error = response.json()["error"]
        assert "cannot be served" in error and "sha256 does not match" in error
        assert httpx.get(base + "/readyz", timeout=5).status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=20)



def test_serve_command_refuses_it_in_one_line(damaged_model, capsys):
    assert main(["serve", str(damaged_model)]) == 2
    assert "sha256 does not match model.json" in capsys.readouterr().err
