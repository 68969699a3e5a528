"""A model that cannot be served (files that do not match model.json, a model.json edited by
hand, a tag the model store does not hold) is never served: every request gets a 503 that
says why, /readyz stays 503 and /livez fails, so an orchestrator restarts the pod and shows
the failure (the CLI refuses each up front, in one line)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.cli import main
from tests.conftest import free_port


@pytest.fixture
def damaged_model(model_dir, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(model_dir, copy)
    data = bytearray((copy / "discriminator.onnx").read_bytes())
    data[100] ^= 0xFF
    (copy / "discriminator.onnx").write_bytes(bytes(data))
    return copy


@pytest.fixture
def edited_card(model_dir, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(model_dir, copy)
    card = json.loads((copy / "model.json").read_text())
    card["channels"] = 5
    (copy / "model.json").write_text(json.dumps(card))
    return copy


def _bentoml_serve(model: str, tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    bentoml = Path(sys.executable).parent / "bentoml"
    env = {**os.environ, "GANSERVE_MODEL": model, "BENTOML_HOME": str(tmp_path / "bentoml")}
    log = tmp_path / "server.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([str(bentoml), "serve", "serving.service:GanService", "--port", str(port),
                                    "--host", "127.0.0.1"], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[3])
    return process, port, log


@pytest.mark.slow
def test_a_tag_the_store_does_not_hold_fails_the_start(tmp_path):
    process, _, log = _bentoml_serve("no-such-model:latest", tmp_path)
    assert process.wait(timeout=120) != 0  # a non-zero exit, not a server that never turns ready
    assert "no-such-model:latest could not be found" in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("case,reason", [("damaged", "sha256 does not match"), ("edited", "channels")])
def test_service_refuses_a_model_it_cannot_serve(case, reason, request, tmp_path):
    model = str(request.getfixturevalue({"damaged": "damaged_model", "edited": "edited_card"}[case]))
    process, port, log = _bentoml_serve(model, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # loading (and refusing) happens in a background thread: wait until it has refused
            try:
                response = httpx.post(base + "/generate", json={"seed": 1}, timeout=5)
                if "cannot be served" in response.json()["error"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert response.status_code == 503 and reason in response.json()["error"]
        assert httpx.get(base + "/readyz", timeout=5).status_code == 503
        assert httpx.get(base + "/livez", timeout=5).status_code >= 500  # dead, not slow: restart me
        assert "Traceback" not in log.read_text()  # a known refusal is one line, not a traceback
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_command_refuses_an_unknown_tag_or_a_busy_port_in_one_line(model_dir, capsys):
    import socket

    assert main(["serve", "no-such-model:latest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nor in the BentoML model store (it holds " in err[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--port {port}: cannot listen" in err[0]


def test_serve_command_refuses_it_in_one_line(damaged_model, capsys):
    assert main(["serve", str(damaged_model)]) == 2
    assert "sha256 does not match model.json" in capsys.readouterr().err


def test_a_port_whose_last_server_just_stopped_is_free():
    """Connections the server closed linger in TIME_WAIT for a minute; like the server itself
    (SO_REUSEADDR), the start-up check does not take them for a server still listening."""
    import socket

    from serving.cli.commands import _check_port_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.close()
    _check_port_free("127.0.0.1", port)
