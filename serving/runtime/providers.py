"""Which ONNX Runtime execution providers to ask for, best first, and whether a GPU is there.

onnxruntime-gpu lists its GPU providers on any host, so a GPU provider is asked for only when
the NVIDIA driver reports a GPU: without one, `auto` is the CPU with no CUDA library loaded and
no warning, and an explicit `cuda` falls back with a warning that says no GPU was found.
"""

from __future__ import annotations

import ctypes
import functools
import logging

import onnxruntime as ort

log = logging.getLogger("ganserve.runtime")
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PROVIDERS = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
PROVIDERS["auto"] = PROVIDERS["tensorrt"]
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
CPU = "CPUExecutionProvider"


def usable_providers(device: str) -> list[str]:
    """The providers to ask ONNX Runtime for, best first, among those installed."""
    available = set(ort.get_available_providers())
    if gpu_wanted(device):
        _preload_cuda_libraries()
    else:
        available -= GPU_PROVIDERS
    if device == "auto" and not _tensorrt_libraries_present():
        available.discard("TensorrtExecutionProvider")  # onnxruntime-gpu lists it even without TensorRT
    return [p for p in PROVIDERS[device] if p in available]


def wanted_provider(device: str) -> str:
    """The provider `device` means here: for an explicit cuda/tensorrt, that provider even if it
    cannot start (so a fallback is reported); for auto/cpu, the best one usable."""
    return PROVIDERS[device][0] if device in ("cuda", "tensorrt") else usable_providers(device)[0]


def gpu_wanted(device: str) -> bool:
    """Whether `device` asks ONNX Runtime for a GPU provider here (it may still fail to start).
    Loads nothing itself, so the serving layout can be chosen before any worker starts."""
    if device == "cpu" or not GPU_PROVIDERS & set(ort.get_available_providers()):
        return False
    return cuda_device_count() > 0


@functools.cache
def cuda_device_count() -> int:
    """GPUs the NVIDIA driver reports (0 without a driver), asked through libcuda itself so
    the serving install needs no torch. Initialising the driver here is safe: BentoML starts
    its workers with exec, and the only processes ganserve forks (the sampler's PNG writers)
    never call CUDA."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _tensorrt_libraries_present() -> bool:
    try:
        ctypes.CDLL("libnvinfer.so.10")
    except OSError:
        return False
    return True


@functools.cache
def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu[cuda,cudnn] brings CUDA and cuDNN as pip packages; load them before the
    first CUDA session so no system-wide CUDA install is needed (ONNX Runtime >= 1.21)."""
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except OSError as error:  # the provider then reports its own failure and we fall back
            log.warning("could not preload CUDA libraries: %s", error)
