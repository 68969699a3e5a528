"""The training precision (training/precision.py): bfloat16 on a CPU only where it computes it
natively, and by default only where it was measured to help; a line that says which and why."""

import logging

import pytest
import torch

from tests.training.helpers import tiny_config
from training import precision
from training.config import TrainConfig
from training.errors import ConfigError
from training.loop import Trainer, train

CPU = torch.device("cpu")


def test_a_cpu_without_native_bfloat16_trains_in_float32_and_says_why(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    for mode in ("auto", "on"):
        chosen = precision.choose(mode, "dcgan", CPU, 28)
        assert chosen.dtype is None and chosen.reason.startswith("float32: this CPU has no native bfloat16 "
                                                                 "(neither AMX nor AVX-512 BF16)")


def test_a_cpu_with_native_bfloat16_uses_it_where_asked_or_measured_to_help(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "AMX")
    monkeypatch.setattr(precision, "CPU_BF16_WINS", frozenset({"dcgan"}))
    assert precision.choose("on", "mlp", CPU, 28).dtype is torch.bfloat16
    assert precision.choose("auto", "dcgan", CPU, 28).reason.startswith("bfloat16 autocast: this CPU has AMX, and "
                                                                        "dcgan")
    assert precision.choose("auto", "dcgan", CPU, 64).dtype is torch.bfloat16
    assert precision.choose("auto", "mlp", CPU, 28).reason == ("float32: this CPU has AMX, but bfloat16 was not "
                                                             "measured to help mlp (--amp on to use it anyway)")
    small = precision.choose("auto", "dcgan", CPU, 8)  # the built-in digits: measured slower in bfloat16
    assert small.dtype is None and small.reason == ("float32: this CPU has AMX, but at 8 px dcgan trains slower in "
                                                    "bfloat16 (measured faster from 28 px; --amp on to use it anyway)")
    assert precision.choose("on", "dcgan", CPU, 8).dtype is torch.bfloat16
    assert precision.choose("off", "dcgan", CPU, 28).dtype is None
    assert precision.choose("cuda", "dcgan", CPU, 28).dtype is None  # runs begun when --amp meant CUDA only


def test_runs_saved_with_the_old_boolean_amp_keep_their_precision():
    assert TrainConfig.from_dict({"amp": True}).amp == "cuda"
    assert TrainConfig.from_dict({"amp": False}).amp == "off"
    with pytest.raises(ConfigError, match="--amp must be one of auto, on, off, cuda; got 'bf16'"):
        TrainConfig(amp="bf16").validate()


@pytest.mark.skipif(not precision.cpu_bf16(), reason="this CPU has no native bfloat16")
def test_bfloat16_steps_keep_losses_and_the_ema_in_float32():
    from training import distributed
    from training.data import load_dataset

    config = tiny_config(amp="on")
    trainer = Trainer(config, load_dataset("digits"), distributed.init("cpu"))
    losses = trainer.step()
    assert trainer.amp_dtype is torch.bfloat16 and all(isinstance(v, float) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in trainer.G_ema.parameters())


def test_the_run_says_its_precision_at_start(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="training.loop"):
        train(tiny_config(steps=1, amp="off"), tmp_path / "run", progress=False)
    assert "precision: float32 (--amp off)" in caplog.text
