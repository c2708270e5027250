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

Tensors = dict[str, np.ndarray]


def weighted_mean_update(
    global_tensors: Mapping[str, np.ndarray], updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> Tensors:
    """``global + Σ_k p_k·Δ_k`` per tensor, p normalised over the clients that sent it.

    A tensor no client sent keeps its value (clients may adapt only some layers).
    """
    result = {}
    for key, value in global_tensors.items():
        senders = [(update[key], weight) for update, weight in zip(updates, weights) if key in update]
        if not senders:
            result[key] = value.copy()
            continue
        total = sum(weight for _, weight in senders)
        step = sum(weight * delta.astype(np.float64) for delta, weight in senders) / total
        result[key] = (value.astype(np.float64) + step).astype(np.float32)
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


def weighted_products(products: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """Σ_k p_k·ΔW_k per layer, p normalised over the clients that adapted the layer."""
    layers = {layer for client in products for layer in client}
    result = {}
    for layer in sorted(layers):
        senders = [(client[layer], weight) for client, weight in zip(products, weights) if layer in client]
        total = sum(weight for _, weight in senders)
        result[layer] = sum(weight * product for product, weight in senders) / total
    return result


def relative_errors(aggregated: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> dict[str, float]:
    """‖aggregated − target‖_F / ‖target‖_F per layer (0 where the target is 0)."""
    errors = {}
    for layer, exact in target.items():
        norm = np.linalg.norm(exact)
        errors[layer] = float(np.linalg.norm(aggregated[layer] - exact) / norm) if norm > 0 else 0.0
    return errors
