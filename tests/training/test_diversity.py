import json
import logging

import pytest
import torch
from tqdm import tqdm

from tests.training.helpers import tiny_config
from training import distributed
from training.data import load_dataset
from training.diversity import WARN_FROM_STEP, collapse_warning, spread
from training.loop import Trainer, _StepLogger, train


def test_spread_is_zero_for_one_image_repeated_and_large_for_varied_ones():
    one = torch.rand(1, 1, 8, 8) * 2 - 1
    assert spread(one.repeat(64, 1, 1, 1)) == 0.0
    assert 0.25 < spread(torch.rand(64, 1, 8, 8) * 2 - 1) < 0.35  # uniform on [0, 1]: std 0.289


def test_collapse_is_warned_only_past_the_first_steps_and_far_below_the_real_spread():
    assert collapse_warning(WARN_FROM_STEP - 1, 0.0, 0.3) is None  # early: initial weights vary little
    assert collapse_warning(WARN_FROM_STEP, 0.1, 0.3) is None  # a third of the real spread: not collapse
    message = collapse_warning(WARN_FROM_STEP, 0.01, 0.3)
    assert "collapsed" in message and "0.010" in message and "0.300" in message and "--arch resnet" in message
    assert "train a new run with --augment flip,translation" in message
    augmented = collapse_warning(WARN_FROM_STEP, 0.01, 0.3, augmented=True)  # it may recover: watch first
    assert "0.010" in augmented and "past step 1,000" in augmented and "with --augment flip" not in augmented


def test_training_logs_diversity_and_without_a_bar_prints_its_progress(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="training")
    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["diversity"] > 0 and r["diversity_real"] > 0.2 for r in records)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("digits: 1797 images, 1x8x8") for m in messages)  # the data summary
    assert any(m.startswith("step 2/2") and "diversity" in m for m in messages)


@pytest.mark.parametrize("augment, advice", [("", "train a new run with --augment"),
                                            ("translation", "can recover within about a thousand steps")])
def test_a_collapsed_generator_is_warned_about_once(tmp_path, caplog, augment, advice):
    config = tiny_config(augment=augment)
    data = load_dataset(config.data)
    trainer = Trainer(config, data, distributed.Context(0, 1, torch.device("cpu")))
    for parameter in trainer.G_ema.parameters():  # every latent now gives the same image
        parameter.data.zero_()
    logger = _StepLogger(tmp_path, trainer.config, tqdm(disable=True), True, progress=True)
    logger.real_diversity = spread(data.batch(range(64)))
    losses = {"loss_d": 1.0, "loss_g": 1.0}
    with caplog.at_level(logging.WARNING, logger="training"):
        logger.step(WARN_FROM_STEP, losses, trainer)
        logger.step(WARN_FROM_STEP + 1, losses, trainer)
    warnings = [r for r in caplog.records if "collapsed" in r.getMessage()]
    assert len(warnings) == 1 and advice in warnings[0].getMessage()
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["diversity"] == 0.0
