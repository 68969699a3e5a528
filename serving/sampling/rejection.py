"""The acceptance rule of discriminator rejection sampling (Azadi et al. 2019).

For seed s, candidates j = 0, 1, 2, ... come from the seed's own streams (candidate 0 is the
seed's plain latent). Candidate j is accepted when u_{s,j} < sigmoid(F(x)), with

    F(x) = D(x) - D_max - log(1 - exp(D(x) - D_max - eps)) - gamma

(D: the discriminator's logit; D_max: its largest logit on a fixed burn-in set of generated
images; u_{s,j}: a uniform number from the stream seeded by (s, j, 1)). gamma is solved on the
burn-in set so that the mean acceptance probability equals the requested rate. The sampling
loop itself is `modes.rejection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-6
BURN_IN_SEED = 2**62  # burn-in latents use seeds from here, far from everyday seeds
BURN_IN_COUNT = 1000


@dataclass(frozen=True)
class AcceptanceRule:
    max_logit: float
    gamma: float

    def probability(self, logits: np.ndarray) -> np.ndarray:
        d = np.minimum(logits.astype(np.float64), self.max_logit) - self.max_logit  # <= 0
        f = d - np.log1p(-np.exp(d - EPSILON)) - self.gamma
        return 0.5 * (1.0 + np.tanh(0.5 * f))  # sigmoid(f), without overflow for large |f|

    @classmethod
    def fit(cls, burn_in_logits: np.ndarray, rate: float) -> AcceptanceRule:
        """gamma such that the mean acceptance probability on the burn-in set is `rate`."""
        max_logit = float(burn_in_logits.max())
        low, high = -60.0, 60.0  # mean probability falls as gamma grows
        for _ in range(80):
            middle = (low + high) / 2
            if cls(max_logit, middle).probability(burn_in_logits).mean() > rate:
                low = middle
            else:
                high = middle
        return cls(max_logit, (low + high) / 2)


def uniform(seed: int, index: int) -> float:
    return float(np.random.Generator(np.random.PCG64([int(seed), index, 1])).random())


def burn_in_seeds() -> range:
    return range(BURN_IN_SEED, BURN_IN_SEED + BURN_IN_COUNT)
