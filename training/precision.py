"""Which precision the networks compute in, on this device, and why.

--amp auto (the default): on CUDA, bfloat16 where the GPU has it, else float16 with a gradient
scaler. On a CPU, bfloat16 autocast only where the CPU computes bfloat16 natively (AMX, or
AVX-512 BF16: detected from PyTorch's own CPU checks) and only for the architectures and sizes
where it was measured to train faster *and* as well at an equal wall-clock budget
(CPU_BF16_WINS, CPU_BF16_MIN_RESOLUTION, docs/quality.md); float32 elsewhere. --amp on asks
for bfloat16 on any CPU that has it; --amp off is float32 everywhere; --amp cuda is what runs
made before CPUs got bfloat16 did. Losses, the optimisers' state and the EMA weights stay
float32 whatever the choice.

    >>> choose("auto", "dcgan", torch.device("cpu"), resolution=28)
    Precision(dtype=torch.bfloat16, reason='bfloat16 autocast: this CPU has AVX-512 BF16 ...')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Architectures whose CPU default is bfloat16 where the CPU has it: faster steps (benchmarks/
# bf16_training.py) and no worse FD at an equal budget (benchmarks/quality/quality_study.py), measured.
CPU_BF16_WINS: frozenset[str] = frozenset({"dcgan"})
# ...from this image side up: at 8 px (the built-in digits) a dcgan step was slower in bfloat16
# (0.90x; the layers are too small to repay the casts), at 28 px 1.39x, at 64 px 1.54-1.88x.
CPU_BF16_MIN_RESOLUTION = 28


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # None: float32, no autocast
    reason: str  # one line for the start of a run

    @property
    def name(self) -> str:
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


def cpu_bf16() -> str | None:
    """The CPU's native bfloat16 (a name for messages), or None when it has none."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX-512 BF16"
    return None


def choose(mode: str, arch: str, device: torch.device, resolution: int) -> Precision:
    if mode == "off":
        return Precision(None, "float32 (--amp off)")
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Precision(dtype, f"{str(dtype).removeprefix('torch.')} autocast on CUDA")
    if mode == "cuda":
        return Precision(None, "float32 on the CPU (--amp cuda: mixed precision on CUDA only, as this run began)")
    native = cpu_bf16()
    if native is None:
        return Precision(None, "float32: this CPU has no native bfloat16 (neither AMX nor AVX-512 BF16), where "
                               "bfloat16 would only be emulated and slower")
    if mode == "on":
        return Precision(torch.bfloat16, f"bfloat16 autocast: this CPU has {native} (--amp on)")
    if arch in CPU_BF16_WINS and resolution >= CPU_BF16_MIN_RESOLUTION:
        return Precision(torch.bfloat16, f"bfloat16 autocast: this CPU has {native}, and {arch} trains faster in "
                                         "it at no cost to quality (docs/quality.md)")
    if arch in CPU_BF16_WINS:
        return Precision(None, f"float32: this CPU has {native}, but at {resolution} px {arch} trains slower in "
                               f"bfloat16 (measured faster from {CPU_BF16_MIN_RESOLUTION} px; --amp on to use it "
                               "anyway)")
    return Precision(None, f"float32: this CPU has {native}, but bfloat16 was not measured to help {arch} "
                           "(--amp on to use it anyway)")
