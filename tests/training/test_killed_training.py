"""`ganserve train` killed for real (SIGKILL from outside, as the kernel's OOM killer or a
preempted node does) while it writes a checkpoint: `--resume` continues from the last complete
state and ends bit-identical to a run that was never stopped."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoints import STATE_PATTERN, list_states, load_state

pytestmark = pytest.mark.slow
GANSERVE = str(Path(sys.executable).with_name("ganserve"))
STEPS = 12
# width 64 makes each state a few MB, so the write (and its fsync) lasts long enough to be caught
RUN = ["--data", "digits", "--width", "64", "--batch-size", "8", "--steps", str(STEPS), "--checkpoint-every", "1",
       "--keep-checkpoints", "3", "--sample-every", "1000", "--log-every", "1", "--no-progress"]


def _step_of_temp(name: str) -> int:
    """The step of a state being written: .state-XXXXXXXX.pt.tmp-PID."""
    return int(name[len(".state-"):][:8])


def _kill_during_a_checkpoint_write(run_dir: Path, after_step: int) -> str:
    """Start a run, SIGKILL it the moment a state file past `after_step` is being written (its
    temp file exists), and return that temp file's name."""
    process = subprocess.Popen([GANSERVE, "train", "--run-dir", str(run_dir), *RUN],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            writing = [entry.name for entry in os.scandir(run_dir) if entry.name.startswith(".state-")] \
                if run_dir.is_dir() else []
            if writing and _step_of_temp(writing[0]) > after_step:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return writing[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError("the run finished or stalled before a checkpoint write could be caught")


def _same_weights(a: Path, b: Path) -> None:
    first, second = load_state(a), load_state(b)
    assert first["step"] == second["step"] == STEPS
    for net in ("G", "D", "G_ema"):
        for key in first[net]:
            assert torch.equal(first[net][key], second[net][key]), f"{net}.{key}"


def test_training_killed_while_writing_a_checkpoint_resumes_bit_identically(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([GANSERVE, "train", "--run-dir", str(straight), *RUN], check=True, capture_output=True)

    temp_name = None
    for _ in range(3):  # the rename can win the race against the kill; then try again
        shutil.rmtree(killed, ignore_errors=True)
        temp_name = _kill_during_a_checkpoint_write(killed, after_step=3)
        if (killed / temp_name).exists():
            break
    assert (killed / temp_name).exists(), "never caught the process inside a checkpoint write"
    complete = [int(STATE_PATTERN.match(p.name).group(1)) for p in list_states(killed)]
    assert complete and max(complete) == _step_of_temp(temp_name) - 1  # the state being written is not listed

    resumed = subprocess.run([GANSERVE, "train", "--resume", str(killed), "--no-progress"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _same_weights(straight / f"state-{STEPS:08d}.pt", killed / f"state-{STEPS:08d}.pt")
    steps_logged = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
                    if '"eval"' not in line]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == STEPS  # each step once, in order
    assert not list(killed.glob(".state-*"))  # the resume cleared the half-written file away


def test_a_torn_last_metrics_line_does_not_stop_the_resume(tmp_path):
    """A kill in the middle of appending to metrics.jsonl leaves half a line; the resume drops it."""
    run = tmp_path / "run"
    subprocess.run([GANSERVE, "train", "--run-dir", str(run), *RUN[:6], "--steps", "4", *RUN[8:]],
                   check=True, capture_output=True)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "loss_d": 1.3')
    resumed = subprocess.run([GANSERVE, "train", "--resume", str(run), "--steps", "6", "--no-progress"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "eval" not in line] == [1, 2, 3, 4, 5, 6]
