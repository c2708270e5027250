"""Aggregation rules: pure numpy on name-keyed tensors, one small function per concern.

Notation: client k trained B_k (m×r), A_k (r×n) (and R_k for core), weight p_k ∝ its
number of examples; a layer's update is ΔW_k = s·B_k·R_k·A_k (R = I unless core).

- ``fedit``, ``ffa``, ``core``, ``fedsa`` and the ``full`` baseline are *linear*: the new
  global tensor is the weighted mean of the clients' tensors, computed as the old global
  plus the weighted mean of their updates. Only tensors that travel are averaged.
- ``flexlora`` averages the *products*, ΔW = Σ p_k·ΔW_k (exact), and hands each client
  back the best rank-r_k approximation of ΔW (truncated SVD) as factors.

``aggregation_error`` measures, per layer, ‖ΔW_agg − Σ p_k·ΔW_k‖_F / ‖Σ p_k·ΔW_k‖_F.

**A lossy downlink.** With ``--wire fp16`` or ``int8`` a client receives the rounded global
``Q(g)``, not ``g``, trains from there to ``t_k`` and sends ``t_k − Q(g)``. The server keeps
the unrounded ``g`` and adds the mean of those updates to it::

    g ← g + Σ p_k·(t_k − Q(g))

so the rounding of the downlink is never compounded into the global state: it stays
``g − Q(g)`` away from what a client could hold, whatever the number of rounds. Clients
trained ``Q(g) + update``, so the exact target Σ p_k·ΔW_k is taken at ``Q(g)`` while the
new global sits at ``g``: that is why ffa and core — exact in fp32 — report a small non-zero
aggregation error under int8 (the downlink's rounding, ``(g − Q(g))·A`` per layer for ffa),
not a loss in aggregation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedlora.adapters.keys import A, B, R, is_adapter_key, split_key
from fedlora.server.robust import combine, krum_choice

Tensors = dict[str, np.ndarray]


def _combined(key: str, contributions: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float], rule: str, chosen: int | None) -> np.ndarray | None:
    """The clients' contributions to ``key`` combined by ``rule`` (None if none sent it);
    ``chosen`` is Krum's client, whose contribution stands for all where it sent one."""
    senders = [(contribution[key], weight) for contribution, weight in zip(contributions, weights) if key in contribution]
    if not senders:
        return None
    if rule == "mean":
        total = sum(weight for _, weight in senders)
        return sum(weight * value.astype(np.float64) for value, weight in senders) / total
    if rule == "krum":
        if key in contributions[chosen]:
            return contributions[chosen][key].astype(np.float64)
        rule = "median"  # a layer Krum's client did not adapt: the median of those that did
    return combine([value for value, _ in senders], [weight for _, weight in senders], rule)


def weighted_mean_update(
    global_tensors: Mapping[str, np.ndarray], updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float], rule: str = "mean"
) -> Tensors:
    """``global + Σ_k p_k·Δ_k`` per tensor, p normalised over the clients that sent it —
    or, with a robust ``rule`` (:mod:`.robust`), the global plus the rule's combination.

    A tensor no client sent keeps its value (clients may adapt only some layers).
    """
    chosen = krum_choice(updates) if rule == "krum" else None
    result = {}
    for key, value in global_tensors.items():
        step = _combined(key, updates, weights, rule, chosen)
        result[key] = value.copy() if step is None else (value.astype(np.float64) + step).astype(np.float32)
    return result


def layer_products(tensors: Mapping[str, np.ndarray], scaling: float) -> dict[str, np.ndarray]:
    """ΔW = s·B·R·A (float64) of every layer whose A and B are in ``tensors``."""
    products = {}
    for key in tensors:
        if not is_adapter_key(key):
            continue
        name = split_key(key)
        if name.tensor != A:
            continue
        b = tensors[name.sibling(B)].astype(np.float64)
        if name.sibling(R) in tensors:
            b = b @ tensors[name.sibling(R)].astype(np.float64)
        products[name.layer] = scaling * b @ tensors[key].astype(np.float64)
    return products


def weighted_products(products: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float], rule: str = "mean") -> dict[str, np.ndarray]:
    """Σ_k p_k·ΔW_k per layer, p normalised over the clients that adapted the layer — or,
    with a robust ``rule`` (:mod:`.robust`), the rule's combination of the ΔW_k."""
    chosen = krum_choice(products) if rule == "krum" else None
    layers = {layer for client in products for layer in client}
    return {layer: _combined(layer, products, weights, rule, chosen) for layer in sorted(layers)}


def relative_errors(aggregated: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> dict[str, float]:
    """‖aggregated − target‖_F / ‖target‖_F per layer (0 where the target is 0)."""
    errors = {}
    for layer, exact in target.items():
        norm = np.linalg.norm(exact)
        errors[layer] = float(np.linalg.norm(aggregated[layer] - exact) / norm) if norm > 0 else 0.0
    return errors
