"""The server's global state and how each method updates it (the strategy's hooks).

Two shapes cover every method:

- :class:`LinearGlobal` — the global *tensors* that travel; each client receives the same
  ones and the new global is their weighted mean (fedit, ffa, core, fedsa, full).
- :class:`ProductGlobal` — the global *update* ΔW of each layer; each client receives the
  best approximation of rank r_k of it as factors (flexlora).

Both report the per-layer aggregation error against Σ p_k·ΔW_k where it is defined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedlora.methods import Method
from fedlora.server.aggregation import (
    Tensors,
    layer_of,
    layer_products,
    relative_errors,
    truncated_factors,
    weighted_mean_update,
    weighted_products,
)


@dataclass(frozen=True)
class ClientResult:
    sent: Tensors  # what the client received (decoded)
    update: Tensors  # what it sent back (decoded): trained − received
    weight: float
    rank: int
    targets: str | None = None

    def trained(self) -> Tensors:
        return {key: self.sent[key] + self.update[key] for key in self.update}


class LinearGlobal:
    def __init__(self, method: Method, initial: Tensors, frozen: Tensors, scaling: float):
        self.method = method
        self.tensors = {key: value.astype(np.float32) for key, value in initial.items()}
        self.frozen = frozen  # adapter tensors that never change: lora-fa's A, core's A and B
        self.scaling = scaling

    def tensors_for(self, rank: int, targets: str | None = None) -> Tensors:
        return self.tensors  # one rank and one set of layers for every client

    def apply(self, results: list[ClientResult]) -> dict[str, float] | None:
        weights = [result.weight for result in results]
        self.tensors = weighted_mean_update(self.tensors, [result.update for result in results], weights)
        if self.method.exact is None:
            return None  # fedsa keeps B on the clients; the baselines have no low-rank update
        target = weighted_products([layer_products({**self.frozen, **r.trained()}, self.scaling) for r in results], weights)
        aggregated = layer_products({**self.frozen, **self.tensors}, self.scaling)
        return relative_errors(aggregated, target)


class ProductGlobal:
    """FlexLoRA: ΔW per layer, truncated per client rank; each client gets the layers its
    device adapts. Until a layer has been trained, clients start from the shared seeded
    initialisation at their rank. A layer's ΔW is averaged over the clients that adapted it."""

    def __init__(self, initial_at_rank: Callable[[int, str | None], Tensors], scaling: float):
        self.initial_at_rank = initial_at_rank  # (rank, adapter targets) -> the seeded adapters
        self.scaling = scaling
        self.products: dict[str, np.ndarray] = {}

    def tensors_for(self, rank: int, targets: str | None = None) -> Tensors:
        tensors = dict(self.initial_at_rank(rank, targets))
        for key in tensors:
            if key.endswith(".lora_A") and layer_of(key) in self.products:
                prefix = key[: -len("lora_A")]
                b, a = truncated_factors(self.products[layer_of(key)], rank, self.scaling)
                tensors[prefix + "lora_B"], tensors[key] = _pad(b, rank, axis=1), _pad(a, rank, axis=0)
        return tensors

    def apply(self, results: list[ClientResult]) -> dict[str, float]:
        weights = [result.weight for result in results]
        self.products.update(weighted_products([layer_products(r.trained(), self.scaling) for r in results], weights))
        # The aggregate itself is exact; what a client receives loses what its rank cannot hold.
        errors: dict[str, list[tuple[float, float]]] = {}
        for result in results:
            received = layer_products(self.tensors_for(result.rank, result.targets), self.scaling)
            for layer, error in relative_errors(received, {k: self.products[k] for k in received}).items():
                errors.setdefault(layer, []).append((error, result.weight))
        return {layer: sum(e * w for e, w in pairs) / sum(w for _, w in pairs) for layer, pairs in errors.items()}

    @property
    def tensors(self) -> Tensors:
        return {f"{layer}.delta": product.astype(np.float32) for layer, product in self.products.items()}


def _pad(factor: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """Zero-pad a factor to ``rank`` along ``axis`` (when the layer is smaller than the rank)."""
    missing = rank - factor.shape[axis]
    if missing <= 0:
        return factor
    widths = [(0, 0), (0, 0)]
    widths[axis] = (0, missing)
    return np.pad(factor, widths)
