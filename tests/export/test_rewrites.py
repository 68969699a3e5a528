"""Export-time rewrites compute what the plain layers compute, and the exported graphs keep
every operator of the model (PixelNorm's epsilon included)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.graphs import export_graph
from export.rewrites import ShiftedSumConv, for_inference, is_image_conv
from training.networks import NetworkSpec, PixelNorm, build_generator


@pytest.mark.parametrize("out_channels, bias", [(1, True), (3, True), (3, False)])
def test_shifted_sum_conv_equals_the_convolution(out_channels, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, out_channels, 3, padding=1, bias=bias)
    x = torch.randn(2, 16, 9, 7)  # not square, so a swapped axis would show
    with torch.no_grad():
        torch.testing.assert_close(ShiftedSumConv(conv)(x), conv(x), atol=1e-5, rtol=1e-5)


def test_only_small_3x3_image_convolutions_are_swapped():
    assert is_image_conv(nn.Conv2d(64, 3, 3, padding=1))
    for other in (nn.Conv2d(64, 16, 3, padding=1), nn.Conv2d(64, 1, 3, padding=0),
                  nn.Conv2d(64, 1, 3, padding=1, stride=2), nn.Conv2d(64, 1, 5, padding=2),
                  nn.Conv2d(64, 1, 3, padding=1, padding_mode="reflect")):
        assert not is_image_conv(other)


@pytest.mark.parametrize("resolution, channels", [(28, 1), (32, 3)])
def test_the_inference_copy_generates_the_same_images(resolution, channels):
    torch.manual_seed(0)
    generator = build_generator(NetworkSpec("dcgan", latent_dim=8, channels=channels, resolution=resolution,
                                            width=8)).eval()
    fast = for_inference(generator)
    assert sum(isinstance(m, ShiftedSumConv) for m in fast.modules()) == 1
    assert not any(isinstance(m, ShiftedSumConv) for m in generator.modules())  # the original is untouched
    z = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(z), generator(z), atol=1e-5, rtol=1e-5)


def test_exported_pixel_norm_keeps_its_epsilon(tmp_path):
    """An all-zero feature vector normalises to zeros, not 0 * inf = NaN."""
    path = tmp_path / "pixel_norm.onnx"
    export_graph(PixelNorm(), {"x": torch.randn(2, 8, 3, 3)}, "y", path)
    assert "Add" in {node.op_type for node in onnx.load(path).graph.node}
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(np.float32)
    x[0, :, 1, 1] = 0.0
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.isfinite(got).all() and (got[0, :, 1, 1] == 0).all()
    np.testing.assert_allclose(got, PixelNorm()(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
