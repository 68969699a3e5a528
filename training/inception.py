"""The standard FID's feature space, from an Inception-v3 the user supplies as an ONNX file.

The package ships no Inception weights (they cannot be downloaded at run time on every
machine, and bundling 100 MB of ImageNet weights for one metric is not worth it). A user who
has them exports the network once to ONNX (docs/quality.md shows how with pytorch-fid); ONNX
is a file we can open without unpickling anything, and ONNX Runtime is already a dependency.

The graph's contract: input float32 (N, 3, H, W), RGB in [0, 1] (H, W fixed or dynamic; 299
when dynamic); first output: the features, any shape (N, ...) that flattens to (N, D) — the
2,048 pool features for the standard FID.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

DEFAULT_SIDE = 299  # Inception-v3's input size
BATCH = 64


class InceptionFeatures:
    def __init__(self, path: Path):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"--inception {self.path}: no such file")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for bad graphs and non-ONNX bytes
            raise ConfigError(f"--inception {self.path}: not an ONNX graph ONNX Runtime can open "
                              f"({str(exc).splitlines()[0][:200]})") from None
        graph_input = self.session.get_inputs()[0]
        shape = graph_input.shape
        if len(shape) != 4 or shape[1] not in (3, "3") or graph_input.type != "tensor(float)":
            raise ConfigError(f"--inception {self.path}: its input {graph_input.name!r} is {graph_input.type} "
                              f"{shape}; expected float32 (N, 3, H, W) RGB in [0, 1]")
        self.input_name = graph_input.name
        self.side = tuple(s if isinstance(s, int) else DEFAULT_SIDE for s in shape[2:])

    def describe(self) -> str:
        return f"Inception-v3 from {self.path.name} (standard FID space)"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Images in [-1, 1] (N, C, H, W), C = 1 or 3 -> features (N, D) float64."""
        out = []
        for start in range(0, len(images), BATCH):
            batch = (images[start:start + BATCH].float() + 1.0) / 2.0
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)  # grayscale as RGB, as FID tools do
            batch = F.interpolate(batch, size=self.side, mode="bilinear", align_corners=False)
            features = self.session.run(None, {self.input_name: batch.contiguous().numpy()})[0]
            out.append(features.reshape(len(batch), -1))
        return np.concatenate(out).astype(np.float64)
