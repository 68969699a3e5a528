"""The engine choice (serving/runtime/engines.py): ONNX Runtime or OpenVINO, measured per model
and machine or named, held to its pixel tolerance by the spot check, the same for every
command on one machine; and a machine without OpenVINO (or without native bfloat16)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ServingError
from serving.formats import spot_check
from serving.formats.model_card import ModelCard
from serving.runtime import engines, openvino_graph

needs_openvino = pytest.mark.skipif(not openvino_graph.available(), reason="OpenVINO is not installed "
                                    "(pip install 'ganserve[openvino]'); the fallback is tested without it")


def _levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_onnx_runtime_cannot_be_asked_for_bfloat16(model_dir):
    card = ModelCard.read(model_dir)
    with pytest.raises(ServingError, match="precision: bf16 runs on OpenVINO"):
        engines.choose(card, "cpu", "onnxruntime", "bf16")
    with pytest.raises(ServingError, match="precision: fp16 graphs are for GPUs"):
        engines.choose(card, "cpu", "auto", "fp16")
    with pytest.raises(ServingError, match="engine: 'tvm' is not allowed"):
        engines.choose(card, "cpu", "tvm")


def test_without_openvino_auto_is_onnx_runtime_and_says_why(model_dir, monkeypatch):
    monkeypatch.setattr(openvino_graph, "available", lambda: False)
    choice = engines.choose(ModelCard.read(model_dir), "cpu", "auto")
    assert (choice.engine, choice.precision) == ("onnxruntime", "fp32")
    assert "OpenVINO is not installed (pip install 'ganserve[openvino]'" in choice.reason
    with pytest.raises(ServingError, match=r"engine: openvino is not installed; pip install 'ganserve\[openvino\]'"):
        engines.choose(ModelCard.read(model_dir), "cpu", "openvino")


@needs_openvino
def test_openvino_in_float32_serves_the_same_images(model_dir):
    onnx_runtime = Engine(model_dir, engine="onnxruntime", threads=1)
    openvino = Engine(model_dir, engine="openvino", precision="fp32", threads=1)
    seeds = list(range(40))
    assert openvino.provider == "OpenVINO CPU" and openvino.runtime()["engine"]["name"] == "openvino"
    assert _levels_apart(openvino.generate(seeds), onnx_runtime.generate(seeds)) <= spot_check.LEVELS_ALLOWED["fp32"]
    assert np.allclose(openvino.score(onnx_runtime.generate(seeds))[0], onnx_runtime.score(
        onnx_runtime.generate(seeds))[0], atol=1e-3)
    batch = openvino.generate(seeds[:8])
    assert np.array_equal(np.concatenate([openvino.generate([s]) for s in seeds[:8]]), batch)  # alone = in a batch
    assert np.array_equal(openvino.generate(seeds[:8]), batch)  # and the same every time


@needs_openvino
def test_openvino_leaves_its_threads_to_the_os(model_dir):
    """Pinned (OpenVINO's default), every worker process of a server computed on the same core:
    two workers ran at half speed each."""
    graph = openvino_graph.OpenVinoGraph(ModelCard.read(model_dir).graph_path("generator"), "fp32", threads=1)
    assert graph._compiled.get_property("ENABLE_CPU_PINNING") is False
    graph.close()


@needs_openvino
def test_openvino_in_bfloat16_stays_within_its_tolerance(model_dir):
    if engines.native_bf16() is None:
        with pytest.raises(ServingError, match="bf16 needs a CPU with native bfloat16"):
            Engine(model_dir, engine="openvino", precision="bf16")
        return
    engine = Engine(model_dir, engine="openvino", precision="bf16", threads=1)
    reference = Engine(model_dir, engine="onnxruntime", threads=1)
    seeds = list(range(200))
    assert engine.precision == "bf16" and engine.spot_check["verdict"] == "ok"
    assert _levels_apart(engine.generate(seeds), reference.generate(seeds)) <= spot_check.LEVELS_ALLOWED["bf16"]


@needs_openvino
def test_a_reduced_precision_beyond_its_tolerance_is_refused_or_falls_back(model_dir, monkeypatch):
    monkeypatch.setitem(spot_check.LEVELS_ALLOWED, "fp32", -1)  # no difference at all allowed: it "differs"
    with pytest.raises(ServingError, match="engine: OpenVINO's fp32 images were 0 levels from the export's"):
        Engine(model_dir, engine="openvino", precision="fp32")
    monkeypatch.setattr(engines, "choose", lambda *args: engines.Choice("openvino", "fp32", "measured (faked)"))
    engine = Engine(model_dir, engine="auto")
    assert engine.choice.engine == "onnxruntime" and engine.provider == "CPUExecutionProvider"
    assert engine.choice.reason.startswith("ONNX Runtime: OpenVINO's fp32 images were 0 levels from the export's")


@needs_openvino
def test_auto_measures_once_per_model_and_machine(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GANSERVE_CACHE", str(tmp_path))
    card = ModelCard.read(model_dir)
    first = engines.choose(card, "cpu", "auto")
    assert set(first.measured["images_per_s"]) == {"onnxruntime", "openvino"}
    assert set(first.measured["openvino_vs_onnxruntime"]) == {"1", "16"}
    gains = first.measured["openvino_vs_onnxruntime"]
    wins = gains["16"] >= engines.MIN_GAIN and gains["1"] >= engines.MIN_SINGLE
    assert first.engine == ("openvino" if wins else "onnxruntime")
    monkeypatch.setattr(engines, "_measure", lambda *args: pytest.fail("measured twice"))
    assert engines.choose(card, "cpu", "auto") == first  # every process on this machine: the same answer
    assert len(list((tmp_path / "engines").glob("*.json"))) == 1


@pytest.mark.slow
@needs_openvino
def test_sample_and_a_server_on_one_engine_give_the_same_bytes(model_dir, tmp_path):
    """HTTP against `ganserve sample`, both on OpenVINO (GANSERVE_ENGINE, as a container sets it)."""
    import io
    import os

    import httpx

    from tests.conftest import ganserve_serve

    env = {**os.environ, "GANSERVE_ENGINE": "openvino"}
    sampled = subprocess.run([str(Path(sys.executable).parent / "ganserve"), "sample", str(model_dir), "--seeds",
                              "0-5", "--out", str(tmp_path / "s"), "--format", "npz", "--no-progress", "--workers",
                              "1"], env=env, capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0 and "OpenVINO CPU" in sampled.stdout, sampled.stderr
    os.environ["GANSERVE_ENGINE"] = "openvino"
    try:
        with ganserve_serve(model_dir, tmp_path, "--workers", "1") as base:
            served = httpx.post(f"{base}/generate", json={"seeds": list(range(6)), "format": "npy"})
            card = httpx.get(f"{base}/model").json()
    finally:
        os.environ["GANSERVE_ENGINE"] = "onnxruntime"
    assert card["engine"]["name"] == "openvino" and card["provider"] == "OpenVINO CPU"
    assert np.array_equal(np.load(io.BytesIO(served.content)), np.load(tmp_path / "s" / "part-00000.npz")["images"])


@needs_openvino
def test_a_cpu_without_native_bfloat16_is_measured_in_float32_and_says_so(model_dir, tmp_path, monkeypatch):
    """(A machine without OpenVINO at all: tests/serving/test_without_openvino.py.)"""
    monkeypatch.setenv("GANSERVE_CACHE", str(tmp_path))
    monkeypatch.setattr(engines, "native_bf16", lambda: None)
    card = ModelCard.read(model_dir)
    choice = engines.choose(card, "cpu", "auto", "auto")
    assert choice.precision == "fp32" and "OpenVINO in fp32" in choice.reason
    assert set(choice.measured["images_per_s"]) == {"onnxruntime", "openvino"}  # measured, not assumed
    with pytest.raises(ServingError, match="precision: bf16 needs a CPU with native bfloat16"):
        engines.choose(card, "cpu", "openvino", "bf16")
