"""Check an exported graph before it is written: the ONNX checker, then ONNX Runtime against
PyTorch on fixed inputs at several batch sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from training.errors import UserError

PARITY_BATCH_SIZES = (1, 7, 64)


class ExportError(UserError):
    """The export cannot go ahead (bad release, bad output folder, or failed verification)."""


@dataclass(frozen=True)
class Tolerance:
    absolute: float  # uint8 levels for G, logit units for D
    relative: float = 0.0  # for D: added tolerance per unit of |logit|

    def allows(self, expected: np.ndarray, got: np.ndarray) -> bool:
        diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
        return bool(np.all(diff <= self.absolute + self.relative * np.abs(expected)))


def open_runtime(path: Path):
    """An ONNX Runtime session on the CPU; ONNX's reference evaluator if ORT lacks a kernel
    (float16 kernels are missing from some CPU builds). Returns (run, runtime name)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (lambda feeds: session.run(None, feeds)[0]), f"onnxruntime {ort.__version__} CPUExecutionProvider"
    except Exception as error:  # ORT raises its own exception types for missing kernels
        if "NOT_IMPLEMENTED" not in str(error):
            raise
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    return (lambda feeds: evaluator.run(None, feeds)[0]), f"onnx {onnx.__version__} ReferenceEvaluator"


def check_graph(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{path.name}: the ONNX checker rejected the graph: {error}") from None


def compare(graph: torch.nn.Module, path: Path, make_inputs, tolerance: Tolerance, label: str) -> dict:
    """Run `graph` (PyTorch) and the file (ONNX) on make_inputs(batch) for each batch size.
    Returns the parity record for model.json; raises ExportError past the tolerance."""
    check_graph(path)
    run, runtime = open_runtime(path)
    max_diff = {}
    for batch in PARITY_BATCH_SIZES:
        inputs = make_inputs(batch)
        with torch.no_grad():
            expected = graph(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()
        got = run(inputs)
        if got.shape != expected.shape or got.dtype != expected.dtype:
            raise ExportError(f"{label}: ONNX gives {got.dtype}{list(got.shape)}, PyTorch "
                              f"{expected.dtype}{list(expected.shape)} at batch {batch}")
        diff = float(np.abs(expected.astype(np.float64) - got.astype(np.float64)).max())
        max_diff[str(batch)] = diff
        if not tolerance.allows(expected, got):
            raise ExportError(f"{label}: ONNX and PyTorch differ by {diff:g} at batch {batch}, beyond the "
                              f"tolerance (absolute {tolerance.absolute:g}, relative {tolerance.relative:g}); "
                              "nothing was written")
    return {"max_abs_diff": max_diff, "tolerance": {"absolute": tolerance.absolute,
                                                    "relative": tolerance.relative}, "runtime": runtime}
