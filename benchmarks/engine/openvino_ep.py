"""OpenVINO two ways: its own Python API (what ganserve's `--engine openvino` uses) against ONNX
Runtime's OpenVINO execution provider (the `onnxruntime-openvino` wheel), on the same
generator.onnx, one thread, interleaved in one process. Writes results/openvino-ep.json.

The execution provider ships its own build of ONNX Runtime under the same module name, so it
cannot share a venv with ganserve's `onnxruntime`; this script makes one (/tmp/ortov-venv,
on first use) and runs its measurements there.

    python -m benchmarks.engine.openvino_ep              # default28 and dcgan64rgb
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, parse_args, write_result

VENV = Path("/tmp/ortov-venv")
PACKAGES = ["onnxruntime-openvino==1.24.1", "openvino==2026.4.1", "numpy"]
ROWS = (1, 16, 64)


def measure(path: str, latent_dim: int, repeats: int) -> dict:
    """Runs inside the venv: images/s per way and rows (best of 0.3 s loops, medians over repeats)."""
    import statistics

    import numpy as np
    import onnxruntime as ort
    import openvino as ov

    core = ov.Core()
    ways = {}
    for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1})
        request = compiled.create_infer_request()
        ways[f"openvino-api-{precision}"] = lambda feeds, request=request: request.infer(feeds)[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    failures = {}
    for precision in ("FP32", "BF16"):  # what the provider accepts for a CPU is checked, not assumed
        try:
            session = ort.InferenceSession(path, options, providers=[("OpenVINOExecutionProvider", {
                "device_type": "CPU", "precision": precision, "num_of_threads": "1"})])
        except Exception as error:  # noqa: BLE001 (the provider's refusal is a result)
            failures[f"ep-{precision.lower()}"] = str(error).splitlines()[0][:300]
            continue
        if session.get_providers()[0] != "OpenVINOExecutionProvider":  # refused, it logs and falls back
            failures[f"ep-{precision.lower()}"] = (f"the provider refused precision {precision} on the CPU and ONNX "
                                                   f"Runtime fell back to {session.get_providers()[0]}")
            continue
        ways[f"onnxruntime-openvino-ep-{precision.lower()}"] = lambda feeds, s=session: s.run(None, feeds)[0]
    plain = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ways["onnxruntime-cpu"] = lambda feeds: plain.run(None, feeds)[0]
    rates = {name: {str(rows): [] for rows in ROWS} for name in ways}
    for rows in ROWS:
        feeds = {"z": np.random.default_rng(0).standard_normal((rows, latent_dim), dtype=np.float32)}
        for run in ways.values():
            run(feeds)
        for _ in range(repeats):  # interleaved
            for name, run in ways.items():
                loops, start = 0, time.perf_counter()
                while time.perf_counter() - start < 0.3:
                    run(feeds)
                    loops += 1
                rates[name][str(rows)].append(loops * rows / (time.perf_counter() - start))
    medians = {name: {rows: round(statistics.median(values), 1) for rows, values in by_rows.items()}
               for name, by_rows in rates.items()}
    return {"images_per_s": medians, "refused": failures,
            "versions": {"onnxruntime": ort.__version__, "openvino": ov.__version__.split("-")[0]}}


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default28,dcgan64rgb")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inner", nargs=2, metavar=("ONNX", "LATENT_DIM"), help=argparse.SUPPRESS)
    args = parse_args(parser, models="default28", repeats=1)
    if args.inner:
        print(json.dumps(measure(args.inner[0], int(args.inner[1]), args.repeats)))
        return

    from benchmarks.models import http_models

    python, rows = ensure_venv(), []
    for name in args.models.split(","):
        folder = http_models()[name]()
        latent_dim = json.loads((folder / "model.json").read_text())["latent_dim"]
        inner = [str(python), "-m", "benchmarks.engine.openvino_ep", "--inner", str(folder / "generator.onnx"),
                 str(latent_dim)]
        out = subprocess.run([*inner,
                              "--repeats", str(args.repeats)], check=True, capture_output=True, text=True, cwd=ROOT)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"model": name, **result})
        for way, rates in result["images_per_s"].items():
            print(f"{name:10} {way:34} " + "  ".join(f"{r:>3} rows {rates[r]:8.1f}/s" for r in rates), flush=True)
        for way, why in result["refused"].items():
            print(f"{name:10} {way:34} refused: {why}", flush=True)
    write_result("openvino-ep", {"threads": 1, "rows": rows})


if __name__ == "__main__":
    main()
