import json
import pickle

import numpy as np
import pytest
import torch

from tests.training.helpers import tiny_config
from training import checkpoints
from training.checkpoints import list_states, load_latest_state, load_state
from training.errors import CheckpointError
from training.loop import train
from training.precision import cpu_bf16
from training.release import read_release


def _weights(path):
    return load_state(path)


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_exact_resume_is_bit_identical_on_cpu(tmp_path):
    # the run is extended from 3 steps to 6, which re-times a learning-rate decay (it follows --steps): a
    # constant rate is what makes the extended run the same as the straight one
    constant = dict(checkpoint_every=3, lr_decay_from=1.0)
    straight = tmp_path / "straight"
    train(tiny_config(steps=6, **constant), straight, progress=False)
    interrupted = tmp_path / "interrupted"
    train(tiny_config(steps=3, **constant), interrupted, progress=False)
    train(tiny_config(steps=6, **constant), interrupted, resume=True, progress=False)
    a = load_state(straight / "state-00000006.pt")
    b = load_state(interrupted / "state-00000006.pt")
    for net in ("G", "D", "G_ema"):
        _assert_same_tensors(a[net], b[net])
    assert torch.equal(a["rng"]["latent"], b["rng"]["latent"])


@pytest.mark.parametrize("options", [dict(arch="resnet", augment="flip,translation", penalty_every=2),
                                     dict()], ids=["resnet-schedules", "dcgan-lr-decay"])
def test_a_run_with_schedules_resumes_bit_identically(tmp_path, options):
    """Schedules are functions of the step: resuming from a middle state of the same run
    (its own --steps) continues exactly as the run went on without stopping."""
    import shutil

    straight = tmp_path / "straight"
    config = tiny_config(steps=6, checkpoint_every=3, **options)
    train(config, straight, progress=False)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (resumed / "state-00000006.pt").unlink()  # as if stopped after the step-3 checkpoint
    train(config, resumed, resume=True, progress=False)
    a, b = load_state(straight / "state-00000006.pt"), load_state(resumed / "state-00000006.pt")
    for net in ("G", "D", "G_ema"):
        _assert_same_tensors(a[net], b[net])


def test_a_run_saved_before_lr_decay_from_resumes_at_its_constant_rate(tmp_path):
    """config.json of an earlier version has no lr_decay_from: dcgan's rates were constant then, and a
    resumed run keeps them so (today's dcgan recipe would decay them)."""
    import json

    from serving.cli import main
    from training.config import TrainConfig

    run = tmp_path / "run"
    train(tiny_config(steps=1, checkpoint_every=1), run, progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved.pop("lr_decay_from") == 0.6  # today's recipe, written resolved
    (run / "config.json").write_text(json.dumps(saved))
    assert TrainConfig.from_dict(saved).resolved().lr_decay_from == 1.0
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    state = load_latest_state(run)
    # step 3 of 4 ran at the constant 5e-4; decayed from 0.6 it would have been (5e-4 + 5e-5) / 2
    assert state["step"] == 4 and state["opt_g"]["param_groups"][0]["lr"] == 5e-4


def test_state_round_trip_loads_strictly(tmp_path):
    from tests.training.test_training_steps import _trainer
    trainer = _trainer()
    trainer.step()
    checkpoints.save_state(tmp_path, 1, trainer.state_dict(), keep=2)
    fresh = _trainer(seed=99)
    fresh.load_state_dict(load_latest_state(tmp_path))  # load_state_dict(strict=True) inside
    _assert_same_tensors(trainer.D.state_dict(), fresh.D.state_dict())
    _assert_same_tensors(trainer.opt_g.state_dict()["state"][0], fresh.opt_g.state_dict()["state"][0])
    assert fresh.step_count == 1


def test_only_the_last_k_states_are_kept(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(steps=4, checkpoint_every=1, keep_checkpoints=2), run, progress=False)
    assert [p.name for p in list_states(run)] == ["state-00000004.pt", "state-00000003.pt"]


def test_crash_while_saving_keeps_the_last_complete_state(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)

    def dies_half_way(obj, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoints.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(steps=4, checkpoint_every=2), run, resume=True, progress=False)
    monkeypatch.undo()
    assert [p.name for p in run.iterdir() if p.name.startswith(("state", ".state"))] == ["state-00000002.pt"]
    train(tiny_config(steps=4, checkpoint_every=2), run, resume=True, progress=False)
    assert load_latest_state(run)["step"] == 4


def test_truncated_newest_state_falls_back_to_previous(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(steps=4, checkpoint_every=2), run, progress=False)
    newest = run / "state-00000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    assert load_latest_state(run)["step"] == 2


class Payload:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_pickled_file_handed_as_a_checkpoint_is_refused(tmp_path):
    with open(tmp_path / "state-00000009.pt", "wb") as handle:
        pickle.dump({"step": 9, "G": Payload()}, handle)
    with pytest.raises(CheckpointError, match="refused"):
        load_latest_state(tmp_path)
    torch.save({"step": 9, "G": Payload()}, tmp_path / "state-00000010.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_latest_state(tmp_path)


def test_release_holds_ema_weights_and_checks_hashes(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    release = read_release(run)
    state = load_state(run / "state-00000002.pt")
    _assert_same_tensors(release.generator_state, state["G_ema"])
    assert release.metadata.step == 2 and release.metadata.dataset == "digits" and release.metadata.holdout == 0.1
    assert json.loads((run / "release" / "config.json").read_text())["format_version"] == 1
    # the held-out images export calibrates D on: the split's first images, as uint8 pixels
    from training.data import load_dataset, split_holdout
    from training.samples import to_uint8

    held_out = split_holdout(load_dataset("digits"), 0.1, 0)[1]
    calibration = release.calibration()
    assert calibration.split == "held-out split" and len(calibration.images) == len(held_out) == 179
    assert np.array_equal(calibration.images, to_uint8(held_out.images)) and calibration.labels is None
    (run / "release" / "generator.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        read_release(run)


def test_a_new_run_never_overwrites_an_existing_one(tmp_path):
    from training.errors import ConfigError

    run = tmp_path / "run"
    train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        train(tiny_config(steps=2, checkpoint_every=2), run, progress=False)
    assert load_latest_state(run)["step"] == 2


@pytest.mark.skipif(not cpu_bf16(),
                    reason="this CPU has no native bfloat16 (AMX or AVX-512 BF16): --amp on trains in float32")
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_a_bfloat16_run_resumes_bit_identically(tmp_path, arch):
    """bfloat16 autocast on the CPU (--amp on): a resumed run continues exactly as the run went on,
    and what is saved (weights, optimiser state, the EMA) stays float32."""
    import shutil

    straight = tmp_path / "straight"
    config = tiny_config(steps=6, checkpoint_every=3, amp="on", arch=arch)
    train(config, straight, progress=False)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (resumed / "state-00000006.pt").unlink()
    train(config, resumed, resume=True, progress=False)
    a, b = load_state(straight / "state-00000006.pt"), load_state(resumed / "state-00000006.pt")
    for net in ("G", "D", "G_ema"):
        _assert_same_tensors(a[net], b[net])
        assert all(t.dtype == torch.float32 for t in a[net].values() if t.is_floating_point()), net
    assert all(s["exp_avg"].dtype == torch.float32 for s in a["opt_g"]["state"].values())
    fp32 = tmp_path / "fp32"  # the run did compute in bfloat16: a float32 twin ends elsewhere
    train(tiny_config(steps=6, checkpoint_every=3, amp="off", arch=arch), fp32, progress=False)
    c = load_state(fp32 / "state-00000006.pt")
    assert not all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"])


def test_a_release_field_of_the_wrong_type_is_refused_by_name(tmp_path):
    """config.json is read through ReleaseMetadata: a hand-edited field is one line naming it."""
    run = tmp_path / "run"
    train(tiny_config(steps=1, checkpoint_every=1), run, progress=False)
    config_path = run / "release" / "config.json"
    config = json.loads(config_path.read_text())
    config["step"] = "two"
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: step is 'two'; expected int\. The release was edited"):
        read_release(run)
