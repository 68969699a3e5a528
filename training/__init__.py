"""Training: data sources, networks, losses, the loop, checkpoints and evaluation (needs torch)."""

__version__ = "0.1.0"
