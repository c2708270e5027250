"""Robust aggregation rules: what replaces the weighted mean under ``--robust``.

Each rule combines the clients' contributions to one tensor (their updates Δ_k for the
linear methods, their products ΔW_k for flexlora), all of the same shape:

- ``mean``    the weighted mean Σ p_k·Δ_k / Σ p_k (FedAvg; no robustness), the default;
- ``median``  the coordinate-wise median (Yin et al., 2018), unweighted;
- ``trimmed`` the coordinate-wise mean after dropping the ⌈β·n⌉ largest and smallest
  values of each coordinate, β = :data:`TRIM` (Yin et al., 2018), unweighted;
- ``krum``    the one contribution closest to its n − f − 2 nearest others, f = ⌊β·n⌋
  assumed attackers (Blanchard et al., 2017), whole-vector: all of a client's tensors
  together choose it.

Flower's ``FedMedian``, ``FedTrimmedAvg`` and ``Krum`` strategies define the same rules over
whole models; fedlora applies them to what it aggregates, tensor by tensor, so that
methods and rank-heterogeneous clients (a tensor only some clients sent) keep working.
The unweighted rules ignore example counts on purpose: a weight is the one thing a client
claims that no rule can check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from fedlora.settings import ROBUST_RULES
#: the fraction of contributions the trimmed mean drops at each end, and that Krum assumes hostile
TRIM = 0.2


def combine(contributions: Sequence[np.ndarray], weights: Sequence[float], rule: str) -> np.ndarray:
    """One tensor from the clients' ``contributions`` (float64)."""
    stacked = np.stack([np.asarray(c, np.float64) for c in contributions])
    if rule == "mean":
        w = np.asarray(weights, np.float64)
        return np.tensordot(w / w.sum(), stacked, axes=1)
    if rule == "median":
        return np.median(stacked, axis=0)
    if rule == "trimmed":
        cut = min(math.ceil(TRIM * len(stacked)), (len(stacked) - 1) // 2)
        ordered = np.sort(stacked, axis=0)
        return ordered[cut : len(stacked) - cut].mean(axis=0)
    raise ValueError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(ROBUST_RULES)}")


def krum_choice(contributions: Sequence[Mapping[str, np.ndarray]]) -> int:
    """The index of the contribution Krum selects: the one whose summed squared distance to
    its n − f − 2 nearest others is smallest (every tensor of a client counts)."""
    n = len(contributions)
    if n <= 2:
        return 0
    f = math.floor(TRIM * n)
    nearest = max(n - f - 2, 1)
    keys = sorted(set.intersection(*(set(c) for c in contributions)))
    flat = np.stack([np.concatenate([np.asarray(c[k], np.float64).ravel() for k in keys]) for c in contributions])
    distances = np.sum((flat[:, None, :] - flat[None, :, :]) ** 2, axis=-1)
    scores = [np.sort(np.delete(distances[i], i))[:nearest].sum() for i in range(n)]
    return int(np.argmin(scores))
