"""`ganserve train-encoder`: E learns G's latents, is written into the release with its hash,
resumes bit-exactly after an interruption, and export adds encoder.onnx."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export.exporter import ExportOptions, export_model
from serving.formats.model_card import ModelCard
from tests.conftest import make_release
from training import encoder as encoder_module
from training.config import EncoderOptions
from training.encoder import STATE_FILE, psnr, train_encoder
from training.errors import CheckpointError, ConfigError
from training.release import ENCODER_FILE, read_release
from training.samples import to_uint8


def test_encoder_recovers_the_latents_of_gs_own_images(tmp_path):
    release = make_release(tmp_path / "run")
    figures = train_encoder(release, EncoderOptions(steps=300, batch=32), progress=False)
    loaded = read_release(release)
    generator, encoder = loaded.build_generator(), loaded.build_encoder()
    with torch.no_grad():
        z = torch.randn(128, 16, generator=torch.Generator().manual_seed(7))
        drawn = generator(z)
        guessed = encoder(drawn)
        unrelated = generator(torch.randn(128, 16, generator=torch.Generator().manual_seed(8)))
        by_e = psnr(to_uint8(generator(guessed)), to_uint8(drawn))
    by_chance = psnr(to_uint8(unrelated), to_uint8(drawn))
    # E's reconstructions are far closer than another latent's image, and its latents near the true ones
    assert by_e > by_chance + 8, (by_e, by_chance)
    assert float((guessed - z).pow(2).mean().sqrt()) < 0.7  # independent latents: sqrt(2) = 1.41
    assert figures["own_images"]["psnr_db"] > by_chance + 8
    assert figures["held_out_real"]["count"] == 20  # measured on the release's held-out images


def test_the_release_names_and_hashes_the_encoder(tmp_path):
    release = make_release(tmp_path / "run")
    train_encoder(release, EncoderOptions(steps=5, batch=8, real_share=0), progress=False)
    config = json.loads((release / "config.json").read_text())
    assert ENCODER_FILE in config["files"] and config["encoder"]["width"] == 32
    assert config["encoder"]["generator_sha256"] == config["files"]["generator.safetensors"]
    assert not (release / STATE_FILE).exists()  # the resume state goes once E is written
    data = bytearray((release / ENCODER_FILE).read_bytes())
    data[-1] ^= 1
    (release / ENCODER_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="encoder.safetensors: sha256 does not match"):
        read_release(release)


def test_an_interrupted_encoder_resumes_to_the_same_weights(tmp_path, monkeypatch):
    options = EncoderOptions(steps=60, batch=8, checkpoint_every=25)
    whole = make_release(tmp_path / "whole")
    train_encoder(whole, options, progress=False)
    broken = make_release(tmp_path / "broken")

    def crash(*args):
        raise KeyboardInterrupt  # after the last step, before E is written: the state of step 50 is left

    with monkeypatch.context() as patched:
        patched.setattr(encoder_module, "measure", crash)
        with pytest.raises(KeyboardInterrupt):
            train_encoder(broken, options, progress=False)
    assert (broken / STATE_FILE).is_file() and not (broken / ENCODER_FILE).exists()
    train_encoder(broken, options, progress=False)  # the same command again: resumes from step 50
    for name, tensor in read_release(whole).encoder_state.items():
        assert torch.equal(tensor, read_release(broken).encoder_state[name]), name


def test_export_adds_a_verified_encoder_graph(tmp_path):
    release = make_release(tmp_path / "run")
    train_encoder(release, EncoderOptions(steps=5, batch=8), progress=False)
    export_model(release, ExportOptions(out=tmp_path / "model", calibration_samples=20))
    card = ModelCard.read(tmp_path / "model")
    assert card.has_encoder and card.graphs["encoder"] == {"file": "encoder.onnx", "inputs": ["images"],
                                                            "output": "latent", "precision": "float32"}
    assert "encoder.onnx" in card.files and card.parity["encoder"]["max_abs_diff"]["1"] < 1e-3
    assert card.source["encoder"]["width"] == 32 and "own_images" in card.source["encoder"]["figures"]


def test_bad_options_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError, match=r"--real-share: 1\.0 is not allowed; use a number from 0 to below 1"):
        EncoderOptions(real_share=1.0).validate()
    release = make_release(tmp_path / "run")
    ganserve = Path(sys.executable).parent / "ganserve"
    run = subprocess.run([str(ganserve), "train-encoder", str(release), "--steps", "0"], capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == ("ganserve train-encoder: error: --steps: 0 is not allowed; use an integer of at "
                                  "least 1")


def test_train_encoder_from_the_command_line(tmp_path):
    release = make_release(tmp_path / "run")
    ganserve = Path(sys.executable).parent / "ganserve"
    run = subprocess.run([str(ganserve), "train-encoder", str(tmp_path / "run"), "--steps", "20", "--batch", "8",
                          "--no-progress", "--threads", "1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "reconstruction PSNR by E alone: G's own images" in run.stdout
    assert f"next: ganserve export {tmp_path / 'run'}" in run.stdout
    assert np.isfinite(json.loads((release / "config.json").read_text())["encoder"]["figures"]["own_images"]
                       ["psnr_db"])
