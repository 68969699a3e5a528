"""Every benchmark script still runs: each one's `--quick` mode, end to end, so none rots
between the runs that measure (benchmarks/README.md). Their figures mean nothing here; what is
checked is that each finishes, writes its results where --quick puts them (never results/), and
records the machine and revision beside its figures."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRITON = ROOT.parent / "shared" / "peers" / "triton"

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
needs_triton = pytest.mark.skipif(not SHARED_TRITON.is_dir(), reason="the Triton peer is set up only on the "
                                                                        "project's benchmark machine")
needs_chromium = pytest.mark.skipif(shutil.which("chromedriver") is None, reason="chromium-driver is not installed")
# Its venv holds another ONNX Runtime build (onnxruntime-openvino, ~200 MB from PyPI): made by a
# measuring run, not by the test suite.
needs_ov_venv = pytest.mark.skipif(not Path("/tmp/ortov-venv/bin/python").exists(),
                                   reason="run `python -m benchmarks.engine.openvino_ep` once to make its venv")

# (module under benchmarks/, its arguments besides --quick, the results it writes)
SCRIPTS = [
    ("engine.engine_bench", [], ["engine", "sampler"]),
    ("engine.engine_pixels", [], ["engine-pixels"]),
    ("engine.gpu", [], ["gpu"]),
    pytest.param("engine.openvino_ep", [], ["openvino-ep"], marks=needs_ov_venv),
    ("training_speed.bf16_training", [], ["bf16-training"]),
    ("training_speed.channels_last", [], ["channels-last"]),
    ("quality.quality_study", [], ["quality-digits"]),
    ("quality.eval_validation", [], ["eval-validation"]),
    ("quality.d_diagnosis", [], ["d-diagnosis"]),
    ("quality.first_hour", [], ["first-hour"]),
    ("quality.projection", [], ["projection"]),
    ("quality.memorisation", [], ["memorisation"]),
    ("quality.quality_figures", [str(ROOT / "benchmarks/results/quality-faces64-30min.json"), "--name", "check"],
     []),
    ("server.cold_start", [], ["cold_start"]),
    pytest.param("server.http_bench", [], ["http"], marks=needs_wrk),
    pytest.param("server.ab_http", ["--before", str(ROOT), "--after", str(ROOT)], ["ab-http"], marks=needs_wrk),
    pytest.param("server.overload", [], ["overload"], marks=needs_wrk),
    pytest.param("server.soak", [], ["soak"], marks=needs_wrk),
    pytest.param("server.tail_diagnosis", [], ["tail-diagnosis"], marks=needs_wrk),
    pytest.param("server.swap_bench", [], ["swap-admin"], marks=needs_wrk),
    ("server.repository_memory", [], ["repository-memory"]),
    pytest.param("server.playground_screenshot", ["MODEL", "--out", "WORK/playground.png"], [], marks=needs_chromium),
    pytest.param("server.gpu_http", ["MODEL"], ["gpu-http"], marks=needs_wrk),
    pytest.param("server.oip_bench", [], ["oip-triton"], marks=[needs_wrk, needs_triton]),
]


def test_every_benchmark_script_is_in_the_list():
    """A new script without a --quick check fails here."""
    listed = {(case.values[0] if hasattr(case, "values") else case[0]) for case in SCRIPTS}
    helpers = {"common", "models", "report", "run", "engine.flops", "server.naive_server", "server.noop_service",
               "server.adaptive_service", "server.diagnosis_service"}  # run by the scripts, not on their own
    scripts = [path for path in (ROOT / "benchmarks").rglob("*.py")
               if path.name != "__init__.py" and "peers" not in path.parts]
    found = {str(path.relative_to(ROOT / "benchmarks").with_suffix("")).replace("/", ".") for path in scripts}
    assert found == listed | helpers


@pytest.fixture(scope="module")
def bench_work(tmp_path_factory):
    """One work folder for every script, so the models they share are trained once."""
    return tmp_path_factory.mktemp("bench-work")


@pytest.mark.slow
@pytest.mark.parametrize(("module", "arguments", "writes"), SCRIPTS)
def test_quick_mode_runs_and_keeps_results_apart(module, arguments, writes, bench_work, model_dir):
    results = ROOT / "benchmarks" / "results"
    before = {path.name: path.stat().st_mtime_ns for path in results.iterdir()}
    arguments = [str(model_dir) if a == "MODEL" else a.replace("WORK", str(bench_work)) for a in arguments]
    env = {**os.environ, "GANSERVE_BENCH_WORK": str(bench_work), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *arguments, "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # a script that records a section's exception and goes on still exits 0: its traceback fails the check
    assert "Traceback (most recent call last)" not in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]
    for name in writes:
        written = json.loads((bench_work / "quick-results" / f"{name}.json").read_text())
        assert written["machine"]["cores"] >= 1 and written["machine"]["cpu"]
        assert set(written) - {"machine", "revision"}, f"{name}.json holds no figures"
    assert {path.name: path.stat().st_mtime_ns for path in results.iterdir()} == before
