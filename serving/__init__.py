"""Serving: the ONNX engine, the BentoML service and the batch sampler (no torch)."""

__version__ = "0.1.0"  # the package's one version (pyproject.toml reads it)
