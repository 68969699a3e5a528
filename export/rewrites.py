"""Equivalent forms of layers that ONNX Runtime runs faster, swapped in only for export.

Training keeps the plain layers; the exporter exports a rewritten copy of G and verifies the
file against the original (`verify.compare`), so a rewrite can never change what is served
beyond the parity tolerance.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# Past this many output channels the plain convolution is already efficient.
FEW_CHANNELS = 4


class ShiftedSumConv(nn.Module):
    """A 3x3, stride-1, padding-1 convolution to a few channels (G's image layer), computed as
    one 1x1 convolution to 9 planes per output channel followed by the sum of the nine planes,
    each shifted by its tap's offset.

    Why: ONNX Runtime pads the output channels of a convolution to its SIMD block (8-16), so a
    3x3 convolution to 1 or 3 channels does 5-16x the needed work, or builds an im2col buffer
    9x the input's size. The 1x1 form reads the input once; the shifts touch only the small
    planes. Same FLOPs; 6% of dcgan64 G's time at batch 32, measured (benchmarks/README.md).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        weight = conv.weight.detach()  # (out, in, 3, 3)
        self.out_channels = weight.shape[0]
        # tap-major: planes [t*out, (t+1)*out) hold tap t = 3*dy + dx for every output channel
        self.register_buffer("taps", weight.permute(2, 3, 0, 1).reshape(9 * self.out_channels, -1, 1, 1).clone())
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(self.out_channels)
        self.register_buffer("bias", bias.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        planes = F.pad(F.conv2d(x, self.taps), (1, 1, 1, 1))  # (N, 9*out, H+2, W+2)
        out = self.bias
        for tap in range(9):
            dy, dx = divmod(tap, 3)
            channels = slice(tap * self.out_channels, (tap + 1) * self.out_channels)
            out = out + planes[:, channels, dy:dy + height, dx:dx + width]
        return out


def is_image_conv(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1)
            and module.padding == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros" and module.out_channels <= FEW_CHANNELS)


def for_inference(generator: nn.Module) -> nn.Module:
    """A copy of G with every rewritable layer swapped for its faster equivalent."""
    fast = copy.deepcopy(generator)
    for parent in fast.modules():
        for name, child in list(parent.named_children()):
            if is_image_conv(child):
                setattr(parent, name, ShiftedSumConv(child))
    return fast
