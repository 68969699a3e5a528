"""The batch sampler killed with SIGKILL at random moments, then resumed: the folder ends
exactly as an uninterrupted run leaves it (every file's sha256 and the manifest); a full disk
stops it with one line and a state --resume finishes."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
GANSERVE = str(Path(sys.executable).with_name("ganserve"))


def _sample(model_dir, out, *extra, seeds="0-1499"):
    return [GANSERVE, "sample", str(model_dir), "--seeds", seeds, "--out", str(out), "--batch-size", "64",
            "--workers", "1", "--no-progress", *extra]


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_killed_at_random_moments_resume_gives_the_uninterrupted_result(model_dir, tmp_path):
    subprocess.run(_sample(model_dir, tmp_path / "whole"), check=True, capture_output=True)
    expected = _contents(tmp_path / "whole")
    rng = random.Random(0)
    for trial in range(5):
        out = tmp_path / f"killed{trial}"
        process = subprocess.Popen(_sample(model_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + 60  # kill it once it has written some files, at a random moment
        while not (out / "manifest.jsonl").is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        os.killpg(process.pid, signal.SIGKILL)  # the sampler and its PNG workers, mid-write
        process.wait()
        resumed = subprocess.run(_sample(model_dir, out, "--resume"), capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert _contents(out) == expected, f"trial {trial}"


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/bin/mount").exists(), reason="needs root to mount a tmpfs")
def test_a_full_disk_stops_it_in_one_line_and_resume_finishes(model_dir, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        full = subprocess.run(_sample(model_dir, disk / "out"), capture_output=True, text=True)
        assert full.returncode == 2
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left" in lines[0].lower() and "--resume" in lines[0]
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        resumed = subprocess.run(_sample(model_dir, disk / "out", "--resume"), capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        subprocess.run(_sample(model_dir, tmp_path / "whole"), check=True, capture_output=True)
        assert _contents(disk / "out") == _contents(tmp_path / "whole")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _default_sigint():
    """Ctrl-C's default action in the child, as a terminal starts a command: a SIGINT ignored by
    the test runner would be inherited, and Python then installs no KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_and_resume_finishes(model_dir, tmp_path):
    out = tmp_path / "out"
    # 7,500 images: enough that the run cannot end between its first manifest line and the signal,
    # even when this test's own polling is slowed by a busy machine (1,500 once did)
    seeds = "0-7499"
    process = subprocess.Popen(_sample(model_dir, out, "--workers", "2", seeds=seeds), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not (out / "manifest.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # the terminal sends it to the whole group, the PNG workers too
    printed, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err.strip().splitlines() == ["ganserve sample: interrupted"], \
        (process.returncode, err, printed)
    resumed = subprocess.run(_sample(model_dir, out, "--resume", seeds=seeds), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
