"""A discriminator that has stopped learning, noticed while training.

When D gives real and generated images the same logit, its loss sits at 2 ln 2 (1.386) and G's
at ln 2, and G gets no signal from it. With spectral norm on a small D at 64 px this happened
while the samples were still blurry blobs: D's features shrank until they no longer told the
two apart, and its gradients fell 500-fold (docs/quality.md, "Photos at 64 px"). A healthy run
also nears 2 ln 2 once G is good, so the warning asks the user to look at the samples.
"""

from __future__ import annotations

import math
from collections import deque

CHANCE_LOSS = 2 * math.log(2)
PINNED_WITHIN = 0.01  # loss_d this close to 2 ln 2...
SAME_LOGIT_WITHIN = 0.05  # ...with D's mean logits for real and generated images this close...
RECORDS = 10  # ...in this many log records in a row


class StalledDiscriminator:
    """Feed it each logged record's losses; it answers once with a warning when D is pinned at chance."""

    def __init__(self, records: int = RECORDS):
        self.recent: deque[bool] = deque(maxlen=records)
        self.warned = False

    def check(self, step: int, losses: dict[str, float], log_every: int) -> str | None:
        pinned = (abs(losses["loss_d"] - CHANCE_LOSS) < PINNED_WITHIN
                  and abs(losses["d_real"] - losses["d_fake"]) < SAME_LOGIT_WITHIN)
        self.recent.append(pinned)
        if self.warned or len(self.recent) < self.recent.maxlen or not all(self.recent):
            return None
        self.warned = True
        return (f"step {step}: D's loss has sat at 2 ln 2 = {CHANCE_LOSS:.3f} for the last "
                f"{self.recent.maxlen * log_every} steps: it gives real and generated images the same logit, so G "
                "learns nothing more from it. If the latest grid in samples/ is still far from the data, D has "
                "stopped learning: train a new run with R1 in place of spectral norm (--no-spectral-norm --r1-gamma 1 "
                "--penalty-every 16, dcgan's default from 64 px), which kept D learning where spectral norm's fell "
                "to chance (docs/quality.md)")
