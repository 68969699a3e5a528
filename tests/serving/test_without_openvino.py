"""OpenVINO is an extra: where it is not installed, every command serves on ONNX Runtime and
says why, and asking for it by name is refused in one line that says what to install.

Real `ganserve` processes in which `openvino` cannot be imported (tests/blocked_imports.py),
with the engine left to its default, `auto`."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.blocked_imports import environment_without
from tests.conftest import ganserve_serve

GANSERVE = Path(sys.executable).parent / "ganserve"


@pytest.fixture(scope="module")
def no_openvino_env(tmp_path_factory):
    env = environment_without(("openvino",), tmp_path_factory.mktemp("no-openvino"))
    env.pop("GANSERVE_ENGINE", None)  # auto, as a user gets it
    return env


def _sample(env, model_dir, out, *options):
    return subprocess.run([str(GANSERVE), "sample", str(model_dir), "--seeds", "0-5", "--out", str(out),
                           "--no-progress", "--workers", "1", *options], env=env, capture_output=True, text=True,
                          timeout=120)


def test_sample_on_auto_runs_on_onnx_runtime_with_its_bytes(no_openvino_env, model_dir, tmp_path):
    auto = _sample(no_openvino_env, model_dir, tmp_path / "auto")
    assert auto.returncode == 0, auto.stderr
    assert "on CPUExecutionProvider (fp32)" in auto.stdout
    pinned = _sample(no_openvino_env, model_dir, tmp_path / "pinned", "--engine", "onnxruntime", "--precision", "fp32")
    assert pinned.returncode == 0, pinned.stderr
    for image in sorted((tmp_path / "pinned").glob("seed*.png")):
        assert (tmp_path / "auto" / image.name).read_bytes() == image.read_bytes()


@pytest.mark.parametrize("options, message", [
    (["--engine", "openvino"], "engine: openvino is not installed; pip install 'ganserve[openvino]'"),
    (["--precision", "bf16"], "engine: openvino is not installed; pip install 'ganserve[openvino]'"),
])
def test_openvino_asked_for_is_refused_in_one_line(no_openvino_env, model_dir, tmp_path, options, message):
    result = _sample(no_openvino_env, model_dir, tmp_path / "out", *options)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("seed*.png"))


@pytest.mark.slow
def test_serve_says_which_engine_and_why(no_openvino_env, model_dir, tmp_path):
    with ganserve_serve(model_dir, tmp_path, "--workers", "1", env=no_openvino_env) as base:
        engine = httpx.get(base + "/model", timeout=10).json()["engine"]
        image = httpx.post(base + "/generate", json={"seed": 3}, timeout=30)
    assert (engine["name"], engine["requested"]) == ("onnxruntime", "auto")
    assert "OpenVINO is not installed" in engine["why"]
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
