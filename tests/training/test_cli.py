import json
import subprocess
import sys

import pytest
import torch

from serving.cli import main
from tests.conftest import COMMANDS, listed_commands
from tests.training.helpers import tiny_config
from training.checkpoints import load_state
from training.loop import train


def test_dry_run_prints_resolved_config_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "--dry-run", "--arch", "mlp", "--steps", "7", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["arch"] == "mlp" and printed["steps"] == 7 and printed["loss"] == "nonsat"
    assert printed["run_dir"] == str(tmp_path / "00000-mlp-digits")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch, lr, betas", [("dcgan", 5e-4, [0.0, 0.99]), ("mlp", 2e-4, [0.5, 0.999]),
                                             ("resnet", 2e-4, [0.0, 0.9])])
def test_each_architecture_fills_in_its_measured_recipe(arch, lr, betas, tmp_path, capsys):
    # docs/quality.md: dcgan's rate and betas won the CPU-budget study; the tutorial's mlp keeps its own.
    assert main(["train", "--dry-run", "--arch", arch, "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["lr_g"], printed["lr_d"], printed["batch_size"]) == (lr, lr, 64)
    assert [printed["beta1"], printed["beta2"]] == betas
    assert main(["train", "--dry-run", "--arch", arch, "--lr-d", "1e-3", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["lr_g"], printed["lr_d"]) == (lr, 1e-3)


def test_bad_option_is_one_line_and_exit_2(capsys):
    assert main(["train", "--dry-run", "--lr-g", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ganserve train: error: --lr-g must be in (0, 1), got 5.0"


def test_resume_refuses_to_change_the_architecture(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=1), run, progress=False)
    assert main(["train", "--resume", str(run), "--arch", "mlp"]) == 2
    assert "--arch cannot change" in capsys.readouterr().err


def test_resume_can_extend_steps(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(steps=1, checkpoint_every=1), run, progress=False)
    assert main(["train", "--resume", str(run), "--steps", "3", "--no-progress"]) == 0
    assert load_state(run / "state-00000003.pt")["step"] == 3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_extending_a_decaying_run_says_the_decay_moves(tmp_path, capsys):
    """dcgan's rates decay from 60% of --steps: a longer run starts its decay later, so the rate at
    the saved step goes back up; the user is told before it happens. A constant rate says nothing."""
    run = tmp_path / "run"
    train(tiny_config(steps=10, checkpoint_every=10), run, progress=False)
    assert main(["train", "--resume", str(run), "--steps", "20", "--dry-run"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == ("note: the learning rates decay from 0.6 of --steps, so changing --steps from 10 to 20 re-times "
                   "the decay: G's rate at step 10 becomes 0.0005 (it was 5e-05), falling to --lr-final from step 12")
    constant = tmp_path / "constant"
    train(tiny_config(steps=1, checkpoint_every=1, lr_decay_from=1.0), constant, progress=False)
    assert main(["train", "--resume", str(constant), "--steps", "3", "--dry-run"]) == 0
    assert capsys.readouterr().err == ""


def test_ganserve_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "serving.cli", "--help"], capture_output=True, text=True).stdout
    assert listed_commands(out) == list(COMMANDS)


@pytest.mark.slow
def test_two_gloo_processes_take_the_single_process_step(tmp_path):
    """Same global batch: the first update of 2 data-parallel processes equals 1 process's."""
    single = tmp_path / "single"
    # float32 on both sides: in bfloat16 (dcgan's default where the CPU has it) a half batch's partial
    # sums round differently from the whole batch's, which would hide the averaging this test checks
    train(tiny_config(steps=1, checkpoint_every=1, loss="wgan-gp", amp="off"), single, progress=False)
    parallel = tmp_path / "parallel"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
               "-m", "training.cli", "--run-dir", str(parallel), "--no-progress", "--steps", "1",
               "--checkpoint-every", "1", "--loss", "wgan-gp", "--amp", "off",
               *[f"--{k.replace('_', '-')}={v}" for k, v in
                 dict(width=8, batch_size=8, log_every=1, sample_every=1000).items()]]
    subprocess.run(command, check=True, capture_output=True, timeout=300, env={"OMP_NUM_THREADS": "1",
                                                                                "PATH": "/usr/bin:/bin"})
    a, b = load_state(single / "state-00000001.pt"), load_state(parallel / "state-00000001.pt")
    # Adam's first step moves each weight by about the learning rate (5e-4) times the sign of its gradient, so
    # gradients averaged wrongly show as differences of ~1e-3; a gradient within float rounding of zero can move
    # its weight by a few 1e-6 in one summation order and not the other (1.5e-6 seen on an AVX-512 CPU)
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.allclose(a[net][key], b[net][key], atol=1e-5, rtol=1e-5), (net, key)
    initial = _initial_generator_weights()
    assert any(not torch.equal(a["G"][k], initial[k]) for k in initial)  # the step did change G


def _initial_generator_weights() -> dict:
    from training.networks import NetworkSpec, build_generator

    torch.manual_seed(0)
    return build_generator(NetworkSpec("dcgan", 100, 1, 8, 0, 8)).state_dict()


def test_resuming_a_state_of_another_network_layout_is_one_line(tmp_path, capsys):
    # As if an earlier version's D had one more layer than this one builds.
    run = tmp_path / "run"
    train(tiny_config(steps=1, checkpoint_every=1), run, progress=False)
    path = run / "state-00000001.pt"
    state = load_state(path)
    state["D"]["head.extra.weight"] = torch.zeros(10, 4)
    torch.save(state, path)
    assert main(["train", "--resume", str(run), "--steps", "2", "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"ganserve train: error: {run}: its newest state does not fit")
    assert 'Unexpected key(s) in state_dict: "head.extra.weight"' in errors[0]


def _photo_folder(folder, side: int, count: int = 4):
    import numpy as np
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    return folder


def test_dry_run_reads_the_data_so_what_follows_its_size_is_what_training_uses(tmp_path, capsys):
    """resnet's width follows the image side: a dry run on 64 px photos says 64, as the run will."""
    photos = _photo_folder(tmp_path / "photos", 64)
    assert main(["train", "--dry-run", "--arch", "resnet", "--data", f"folder:{photos}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data_shape"] == [3, 64, 64] and printed["width"] == 64
    assert main(["train", "--dry-run", "--arch", "resnet", "--data", f"folder:{photos}", "--resolution", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["width"] == 32
    assert main(["train", "--dry-run", "--data", f"folder:{tmp_path / 'missing'}"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_dcgan_s_recipe_follows_the_data_s_resolution(tmp_path, capsys):
    """From 64 px, R1 every 16th step in place of spectral norm (docs/quality.md, "Photos at 64 px");
    the digits keep theirs; --dry-run reads the data to say which, and a flag still overrides."""
    photos = _photo_folder(tmp_path / "photos", 64)
    assert main(["train", "--dry-run", "--data", f"folder:{photos}", "--out", str(tmp_path / "runs")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data_shape"] == [3, 64, 64]
    assert (printed["spectral_norm"], printed["r1_gamma"], printed["penalty_every"]) == (False, 1.0, 16)
    assert main(["train", "--dry-run", "--data", f"folder:{photos}", "--spectral-norm", "--r1-gamma", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["spectral_norm"], printed["r1_gamma"], printed["penalty_every"]) == (True, 0.0, 16)
    for data, resolution in ((f"folder:{_photo_folder(tmp_path / 'small', 32)}", "32"), ("digits", "28"),
                             (f"folder:{photos}", "32")):  # --resolution 32 brings the photos below 64 px
        assert main(["train", "--dry-run", "--data", data, "--resolution", resolution]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert (printed["spectral_norm"], printed["r1_gamma"], printed["penalty_every"]) == (True, 0.0, 1)
