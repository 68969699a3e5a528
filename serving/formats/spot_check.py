"""The export's outputs for two seeds, checked again on the runtime actually installed.

Export verifies every graph against PyTorch on the ONNX Runtime of the export machine. A
server (a container, a GPU host) may run another version or another provider, so at start-up
the engine generates the same seeds and scores the same images and compares them with what
the export's runtime produced (`spot_check.npz`, hashed in model.json like every file). Within
the export's tolerance: fine. Beyond it: a warning, and /model says so. Far beyond it (a
broken runtime, not rounding): the model is refused.
"""

from __future__ import annotations

import numpy as np

FILE = "spot_check.npz"
SEEDS = (0, 1)
# uint8 levels from the export's images: another provider may round differently (fp32), float16
# keeps ~3 decimal digits, and bfloat16 (OpenVINO on a CPU) ~2: over 1,000 seeds of trained models
# of every architecture and size its images were at most 16 levels from float32's (99% of pixels
# within 3; benchmarks/engine/engine_pixels.py, results/engine-pixels.json)
LEVELS_ALLOWED = {"fp32": 2, "fp16": 8, "bf16": 16}
LEVELS_BROKEN = 32  # past this the runtime computes something else: refuse


def reference(run_generator, run_discriminator, generator_feeds: dict, discriminator_labels) -> dict:
    """What the export's runtime makes of SEEDS: written into the model folder. A model without
    a discriminator (`run_discriminator` None) saves images only."""
    images = run_generator(generator_feeds)
    saved = {"seeds": np.asarray(SEEDS, np.int64), "images": images}
    if run_discriminator is not None:
        logits = run_discriminator({"images": images, **({"labels": discriminator_labels}
                                                         if discriminator_labels is not None else {})})
        saved["logits"] = logits.astype(np.float32)
    return saved


def compare(saved: dict, images: np.ndarray, logits: np.ndarray | None, precision: str) -> dict:
    """The figures /model reports; 'verdict' is ok, differs (warn) or broken (refuse)."""
    level_diff = int(np.abs(saved["images"].astype(np.int16) - images.astype(np.int16)).max())
    logit_diff = float(np.abs(saved["logits"] - logits).max()) if logits is not None else None
    allowed = LEVELS_ALLOWED.get(precision, LEVELS_ALLOWED["fp32"])
    verdict = "ok" if level_diff <= allowed else ("broken" if level_diff > LEVELS_BROKEN else "differs")
    return {"seeds": [int(s) for s in saved["seeds"]], "max_level_diff": level_diff,
            "max_logit_diff": None if logit_diff is None else round(logit_diff, 6), "levels_allowed": allowed,
            "verdict": verdict}
