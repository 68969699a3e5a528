"""The serving install has no torch: every serving command works in a process where the
training extra cannot be imported, and the training commands say in one line what to install.

The processes are real `ganserve` commands in which no module of the training extra can be
imported, nor in the server's worker processes (tests/blocked_imports.py).
"""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.blocked_imports import environment_without
from tests.conftest import COMMANDS, free_port, listed_commands, wait_for_ok

GANSERVE = Path(sys.executable).parent / "ganserve"
TRAIN_EXTRA = ("torch", "safetensors", "sklearn", "scipy", "onnx", "onnxscript")


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    return environment_without(TRAIN_EXTRA, tmp_path_factory.mktemp("no-train-extra"))


def _ganserve(env, *args, cwd=None):
    return subprocess.run([str(GANSERVE), *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_command(no_torch_env):
    result = _ganserve(no_torch_env, "--help")
    assert result.returncode == 0, result.stderr
    assert listed_commands(result.stdout) == list(COMMANDS)  # the training commands too, to say what to install


@pytest.mark.parametrize("args", [["train", "--steps", "1"], ["export", "runs/x"], ["eval", "runs/x"],
                                  ["import", "netG.pth"], ["train-encoder", "runs/x"]])
def test_training_commands_say_in_one_line_what_to_install(no_torch_env, tmp_path, args):
    result = _ganserve(no_torch_env, *args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "pip install 'ganserve[train]'" in lines[0]


def test_sample_score_and_interpolate_run(no_torch_env, model_dir, tmp_path):
    sampled = _ganserve(no_torch_env, "sample", str(model_dir), "--seeds", "0-3", "--out", str(tmp_path / "s"),
                        "--no-progress", "--workers", "1")
    assert sampled.returncode == 0, sampled.stderr
    assert sorted(p.name for p in (tmp_path / "s").glob("*.png")) == [f"seed{i:08d}.png" for i in range(4)]
    scored = _ganserve(no_torch_env, "score", str(model_dir), str(tmp_path / "s" / "seed00000001.png"), "--json")
    assert scored.returncode == 0 and '"p_real"' in scored.stdout, scored.stderr
    walked = _ganserve(no_torch_env, "interpolate", str(model_dir), "--from", "1", "--to", "2", "--frames", "3",
                       "--out", str(tmp_path / "walk.gif"))
    assert walked.returncode == 0 and (tmp_path / "walk.gif").stat().st_size > 0, walked.stderr


def test_project_runs_without_torch(no_torch_env, encoder_model_dir, tmp_path):
    sampled = _ganserve(no_torch_env, "sample", str(encoder_model_dir), "--seeds", "0-2", "--out",
                        str(tmp_path / "s"), "--no-progress", "--workers", "1")
    assert sampled.returncode == 0, sampled.stderr
    projected = _ganserve(no_torch_env, "project", str(encoder_model_dir), str(tmp_path / "s"), "--out",
                          str(tmp_path / "p"), "--no-progress")
    assert projected.returncode == 0 and "projected 3 images" in projected.stdout, projected.stderr


def test_an_imported_model_samples_without_torch(no_torch_env, tmp_path):
    from export.importer import ImportOptions, import_model
    from tests.export.foreign_models import hand_built_generator

    hand_built_generator(tmp_path / "g.onnx")
    import_model(tmp_path / "g.onnx", ImportOptions(out=tmp_path / "imported"))  # import needs the train extra...
    sampled = _ganserve(no_torch_env, "sample", str(tmp_path / "imported"), "--seeds", "0-2", "--out",
                        str(tmp_path / "s"), "--no-progress", "--workers", "1")  # ...serving it does not
    assert sampled.returncode == 0, sampled.stderr
    assert len(list((tmp_path / "s").glob("seed*.png"))) == 3
    scored = _ganserve(no_torch_env, "score", str(tmp_path / "imported"), str(tmp_path / "s" / "seed00000001.png"))
    assert scored.returncode == 2 and "model 'imported' has no discriminator" in scored.stderr


@pytest.mark.slow
def test_serve_answers_without_torch(no_torch_env, model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([str(GANSERVE), "serve", str(model_dir), "--port", str(port), "--host",
                                    "127.0.0.1", "--workers", "1"], env=no_torch_env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_ok(f"http://127.0.0.1:{port}/readyz", process, log=log)
        response = httpx.post(f"http://127.0.0.1:{port}/generate", json={"seed": 3}, timeout=30)
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert "No module named 'torch'" not in log.read_text()
