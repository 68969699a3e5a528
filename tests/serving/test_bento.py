"""`bentoml build` of bentofile.yaml: the serving code, no torch, the model pinned."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SAVE_MODEL = """
import json, sys
from pathlib import Path
from export.exporter import save_to_bentoml
folder = Path(sys.argv[1])
print(save_to_bentoml(folder, "ganserve-digits", json.loads((folder / "model.json").read_text())))
"""


def test_bento_holds_serving_code_without_torch_and_pins_the_model(model_dir, tmp_path):
    home = tmp_path / "bentoml"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GANSERVE_")}, "BENTOML_HOME": str(home)}
    # Saved by a process of its own: BentoML fixes its store's folder the first time a process
    # uses it, so an earlier test's store would hold the model where `bentoml build` never looks.
    saved = subprocess.run([sys.executable, "-c", SAVE_MODEL, str(model_dir)], capture_output=True, text=True,
                           env=env, timeout=120)
    assert saved.returncode == 0, saved.stderr[-3000:]
    tag = saved.stdout.strip().splitlines()[-1]
    bentoml = Path(sys.executable).parent / "bentoml"
    built = subprocess.run([str(bentoml), "build", "--output", "tag"], cwd=ROOT, capture_output=True, text=True,
                           env=env, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (bento,) = [p for p in (home / "bentos" / "ganserve").iterdir() if p.is_dir()]
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "serving.service:GanService"
    assert [m["tag"] for m in manifest["services"][0]["models"]] == [tag]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().lower()
    assert "onnxruntime==1.32.0" in requirements and "onnxruntime-gpu" not in requirements  # the CPU image
    assert "httptools" in requirements and "uvloop" in requirements  # uvicorn's fast HTTP path
    assert "torch" not in requirements
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "apt-get" not in dockerfile and "build-essential" not in dockerfile  # no compilers, no git
    sources = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert "serving/service.py" in sources and "serving/engine.py" in sources
    assert not any(s.startswith(("training/", "export/", "tests/")) for s in sources)
    for source in sources:  # the serving code itself never imports torch or the training code
        text = (bento / "src" / source).read_text()
        assert "import torch" not in text and "from training" not in text


def _pins(bentofile: str) -> dict[str, str]:
    packages = yaml.safe_load((ROOT / bentofile).read_text())["python"]["packages"]
    return dict(p.split("==") for p in packages)


def test_the_bentos_pin_the_serving_stack_the_suite_runs():
    from importlib.metadata import version

    constraints = dict(line.split("==") for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    cpu, gpu = _pins("bentofile.yaml"), _pins("bentofile-gpu.yaml")
    assert all("==" not in p for p in cpu) and cpu.keys() - {"onnxruntime"} == gpu.keys() - {
        "onnxruntime-gpu[cuda,cudnn]"}
    for package, pinned in cpu.items():
        assert constraints[package] == pinned == version(package), package  # tested here, pinned there
    for package in cpu.keys() - {"onnxruntime"}:
        assert gpu[package] == cpu[package]
    openvino = _pins("bentofile-openvino.yaml")  # the CPU bento and OpenVINO, pinned as the suite runs it
    assert openvino == {**cpu, "openvino": constraints["openvino"]} and constraints["openvino"] == version("openvino")
