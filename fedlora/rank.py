"""How many singular values a factorized layer keeps.

Three rules, chosen per run and applied per layer:

- ``fixed``: the same rank ``r`` for every layer;
- ``energy``: the smallest ``r`` whose singular values carry at least a fraction ``e`` of
  the layer's squared Frobenius norm (``Σ_{i<r} s_i² ≥ e·Σ s_i²``);
- ``budget``: the largest ``r`` whose factors hold at most a fraction ``p`` of the dense
  layer's parameters, ``r·(m+n) ≤ p·m·n`` (at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedlora.errors import FedloraError

RankKind = Literal["fixed", "energy", "budget"]


@dataclass(frozen=True)
class RankRule:
    kind: RankKind
    value: float

    def __post_init__(self) -> None:
        if self.kind == "fixed" and (self.value < 1 or self.value != int(self.value)):
            raise FedloraError(f"rank must be a whole number ≥ 1, got {self.value}")
        if self.kind == "energy" and not 0 < self.value <= 1:
            raise FedloraError(f"energy threshold must be in (0, 1], got {self.value}")
        if self.kind == "budget" and not 0 < self.value:
            raise FedloraError(f"parameter ratio must be > 0, got {self.value}")

    def choose(self, singular_values: np.ndarray, out_features: int, in_features: int) -> int:
        """The rank for a layer of shape (out_features, in_features) with these singular values."""
        full = min(out_features, in_features)
        if self.kind == "fixed":
            return int(self.value)
        if self.kind == "energy":
            energy = np.square(np.asarray(singular_values, dtype=np.float64))
            cumulative = np.cumsum(energy) / max(energy.sum(), 1e-300)
            # the first rank whose cumulative energy reaches the threshold (ranks count from 1)
            reached = np.flatnonzero(cumulative >= self.value - 1e-12)
            return int(reached[0]) + 1 if len(reached) else full
        budget_rank = math.floor(self.value * out_features * in_features / (out_features + in_features))
        return max(1, min(full, budget_rank))

    def describe(self) -> str:
        return {
            "fixed": f"rank {int(self.value)}",
            "energy": f"energy ≥ {self.value:g}",
            "budget": f"≤ {self.value:.0%} of dense parameters",
        }[self.kind]
