"""Training: data sources, networks, losses, the loop, checkpoints and evaluation (needs torch)."""
