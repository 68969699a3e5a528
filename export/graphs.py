"""The exported graphs: G and D with the uint8 NHWC image format fused in, and the exporter.

Both graphs speak uint8 (N, H, W, C) images, so no client and no serving code re-implements
normalisation: G ends with the [-1, 1] -> uint8 mapping, D starts with its inverse.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from serving.formats.pixels import from_levels, to_levels

# A fixed opset: 18 is the newest that every ONNX Runtime from 1.14 on runs, with all the
# operators these networks need.
OPSET = 18
MAX_BATCH = 1 << 16


class GeneratorGraph(nn.Module):
    """z (N, latent) float32 [+ labels (N,) int64, or label_weights (N, classes) float32 for the
    label-blending graph of conditional models] -> images (N, H, W, C) uint8."""

    def __init__(self, generator: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.generator = generator.to(compute_dtype)
        self.compute_dtype = compute_dtype

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                label_weights: torch.Tensor | None = None) -> torch.Tensor:
        if label_weights is not None:
            label_weights = label_weights.to(self.compute_dtype)
        images = self.generator(z.to(self.compute_dtype), labels, label_weights).float()  # (N, C, H, W) in [-1, 1]
        pixels = to_levels(images).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1)  # (N, H, W, C)


class DiscriminatorGraph(nn.Module):
    """images (N, H, W, C) uint8 [+ labels (N,) int64] -> logits (N,) float32."""

    def __init__(self, discriminator: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.discriminator = discriminator.to(compute_dtype)
        self.compute_dtype = compute_dtype

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = from_levels(images.permute(0, 3, 1, 2).to(self.compute_dtype))  # (N, C, H, W) in [-1, 1]
        return self.discriminator(x, labels).float()  # (N,)


class EncoderGraph(nn.Module):
    """images (N, H, W, C) uint8 -> latent (N, latent_dim) float32: E for projection."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(from_levels(images.permute(0, 3, 1, 2).float()))


def export_graph(graph: nn.Module, example: dict[str, torch.Tensor], output_name: str, path: Path) -> None:
    """Export with torch.onnx.export(dynamo=True): the torch.export-based exporter is the one
    PyTorch recommends (and defaults to) since 2.9; the TorchScript exporter is deprecated.
    The batch axis is dynamic; the file is self-contained (no external data).

    The exporter's own graph optimiser stays off: its "x + 0 -> x" rule matches constants
    within 1e-8 of zero, so it deleted PixelNorm's epsilon (1e-8) and an all-zero feature
    vector came out as 0 * inf = NaN. ONNX Runtime runs its own graph optimisations at load."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = {name: {0: batch} for name in example}
    # The exporter prints progress lines and warns about optional torchvision operators.
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _level(quiet, logging.ERROR):
        warnings.simplefilter("ignore", FutureWarning)
        # z and labels share the batch axis, and the exporter says it keeps one name for both
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints", category=UserWarning)
        program = torch.onnx.export(graph.eval(), (), kwargs=example, dynamo=True, opset_version=OPSET,
                                    input_names=list(example), output_names=[output_name],
                                    dynamic_shapes=dynamic, external_data=False, verbose=False,
                                    optimize=False)
    model = program.model_proto  # built anew on each access: strip and save this one
    strip_node_metadata(model)
    onnx.save_model(model, str(path))


def strip_node_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node records (stack traces, FX nodes, module paths): most of a
    small graph's bytes, and they tie a file's bytes, so its sha256 and the model version, to
    the source lines of the machine that exported it rather than to the model alone."""
    for graph in [model.graph, *(f for f in model.functions)]:
        for node in graph.node:
            del node.metadata_props[:]


@contextlib.contextmanager
def _level(logger: logging.Logger, level: int):
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
