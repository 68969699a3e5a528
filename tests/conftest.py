"""Shared helpers: tiny data files the tests write themselves (no downloads)."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Caches (decoded folders, evaluation classifiers) in the session's own folder, never the
    user's ~/.cache; shared by the tests of one session, and by the processes they start."""
    previous = os.environ.get("GANSERVE_CACHE")
    os.environ["GANSERVE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("GANSERVE_CACHE", None)
    else:
        os.environ["GANSERVE_CACHE"] = previous


@pytest.fixture(autouse=True, scope="session")
def onnx_runtime_engine():
    """Tests compare bytes with ONNX Runtime's (and PyTorch's): they run on it, here and in the
    processes they start, unless a test picks an engine itself (tests/serving/runtime/test_engines.py);
    left to `auto`, a timing could pick OpenVINO's bfloat16 for a model and move a pixel."""
    previous = os.environ.get("GANSERVE_ENGINE")
    os.environ["GANSERVE_ENGINE"] = "onnxruntime"
    yield
    if previous is None:
        os.environ.pop("GANSERVE_ENGINE", None)
    else:
        os.environ["GANSERVE_ENGINE"] = previous


COMMANDS = ("train", "eval", "train-encoder", "export", "import", "serve", "sample", "interpolate", "score",
            "project", "audit")


def command_options(command: str) -> dict[str, object]:
    """`ganserve COMMAND`'s options: dest -> the argparse action (its default, option strings)."""
    import argparse

    from serving.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in subcommands.choices[command]._actions}


def listed_commands(help_text: str) -> list[str]:
    """The commands `ganserve --help` lists, in its order: each on a line of its own, indented
    four spaces under COMMAND (argparse's layout for sub-commands)."""
    return re.findall(r"^    ([a-z][a-z-]*)(?:\s|$)", help_text, flags=re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ganserve_serve(model_dir: Path, workdir: Path, *options: str, env: dict[str, str] | None = None):
    """A real `ganserve serve MODEL` process on a free port (in `env`, else this process's
    environment); yields its base URL once /readyz is 200."""
    port = free_port()
    log = workdir / "server.log"
    ganserve = Path(sys.executable).parent / "ganserve"
    with open(log, "w") as handle:
        process = subprocess.Popen([str(ganserve), "serve", str(model_dir), "--port", str(port), "--host",
                                    "127.0.0.1", *options], stdout=handle, stderr=subprocess.STDOUT,
                                   env={**(env or os.environ), "BENTOML_HOME": str(workdir / "bentoml")})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ok(base + "/readyz", process, log=log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_ok(url: str, process, timeout: float = 90.0, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail with the server's log if the process dies or time runs out."""
    import time

    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-3000:] if log else ''}")
        time.sleep(0.2)
    pytest.fail(f"{url} not 200 within {timeout} s: {log.read_text()[-3000:] if log else ''}")


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array in the IDX format (the MNIST files' format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """40 MNIST-format 28x28 images in two classes: bright squares (0) and dark (1)."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.integers(0, 60, (40, 28, 28)).astype(np.uint8)
    images[labels == 0, 8:20, 8:20] = 250
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", labels, compress=True)
    return folder


def make_release(folder: Path, arch: str = "dcgan", resolution: int = 8, channels: int = 1,
                 num_classes: int = 0, seed: int = 0, with_calibration: bool = True, width: int = 8) -> Path:
    """A release of freshly initialised networks, with the held-out half of a small npz data
    set saved in it for D's calibration, as training saves them (`with_calibration=False`: as
    releases were before they carried them): exercises export and serving without a training run."""
    import torch

    from training.data import load_dataset, split_holdout
    from training.networks import NetworkSpec, build_discriminator, build_generator
    from training.release import CalibrationSet, ReleaseMetadata, write_release

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (40, resolution, resolution, channels), dtype=np.uint8)
    labels = np.arange(40) % num_classes if num_classes else None
    data_path = folder / "data.npz"
    np.savez(data_path, images=images, **({"labels": labels} if labels is not None else {}))
    torch.manual_seed(seed)
    spec = NetworkSpec(arch, latent_dim=16, channels=channels, resolution=resolution,
                       num_classes=num_classes, width=width)
    metadata = ReleaseMetadata(class_names=[str(i) for i in range(num_classes)] if num_classes else None,
                               dataset=f"npz:{data_path}", holdout=0.5, seed=seed, step=1)
    held_out = split_holdout(load_dataset(f"npz:{data_path}"), 0.5, seed)[1]
    calibration = CalibrationSet.from_dataset(held_out, "held-out split", bool(num_classes)) \
        if with_calibration else None
    return write_release(folder / "release", build_generator(spec), build_discriminator(spec, True), spec,
                         metadata, calibration)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """An exported unconditional dcgan model folder (8x8 grayscale), shared by serving tests."""
    from export.exporter import ExportOptions, export_model

    root = tmp_path_factory.mktemp("model")
    release = make_release(root / "run")
    export_model(release, ExportOptions(out=root / "models" / "tiny", calibration_samples=20))
    return root / "models" / "tiny"


ENCODER_TEST_STEPS = 300  # E for the 8 px test model: about 4 s on one core


@pytest.fixture(scope="session")
def encoder_model_dir(tmp_path_factory) -> Path:
    """`model_dir`'s kind of model with an encoder (ganserve train-encoder), for projection."""
    from export.exporter import ExportOptions, export_model
    from training.config import EncoderOptions
    from training.encoder import train_encoder

    root = tmp_path_factory.mktemp("emodel")
    release = make_release(root / "run")
    train_encoder(release, EncoderOptions(steps=ENCODER_TEST_STEPS, batch=32), progress=False)
    export_model(release, ExportOptions(out=root / "models" / "tinye", calibration_samples=20))
    return root / "models" / "tinye"


@pytest.fixture(scope="session")
def conditional_model_dir(tmp_path_factory) -> Path:
    from export.exporter import ExportOptions, export_model

    root = tmp_path_factory.mktemp("cmodel")
    release = make_release(root / "run", num_classes=3, seed=1)
    export_model(release, ExportOptions(out=root / "models" / "tinyc", calibration_samples=20))
    return root / "models" / "tinyc"


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """Another unconditional 8x8 model, with other weights: a second version of `model_dir`."""
    from export.exporter import ExportOptions, export_model

    root = tmp_path_factory.mktemp("model-b")
    release = make_release(root / "run", seed=2)
    export_model(release, ExportOptions(out=root / "models" / "tiny", calibration_samples=20))
    return root / "models" / "tiny"
