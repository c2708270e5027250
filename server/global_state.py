"""The server's global state and how each method updates it (the strategy's one hook).

Every method's state answers the same :class:`GlobalState` protocol; the method's
``rule`` picks the shape:

- :class:`LinearGlobal` (rule ``mean``) — the global *tensors* that travel; each client
  receives the same ones and the new global is their weighted mean (fedit, ffa, core,
  fedsa, and the baselines full and local).
- :class:`ProductGlobal` (rule ``product``) — the global *update* ΔW of each layer; each
  client receives the best approximation of rank r_k of it as factors (flexlora).

Both report the per-layer aggregation error against Σ p_k·ΔW_k where it is defined.
"""

from __future__ import annotations

import copy

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedlora.adapters.keys import A, B, delta_key, is_adapter_key, split_key
from fedlora.lowrank import truncated_factors
from fedlora.methods import Method
from fedlora.server.aggregation import (
    Tensors,
    layer_products,
    relative_errors,
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


class GlobalState(Protocol):
    def tensors_for(self, rank: int, targets: str | None = None) -> Tensors:
        """The global tensors a client of this rank and these adapted layers receives."""

    def apply(self, results: list[ClientResult]) -> dict[str, float] | None:
        """Aggregate one round's accepted results; the aggregation error per layer (None
        where the method defines none)."""

    @property
    def tensors(self) -> Tensors:
        """The whole state, as saved at the end of a run."""


class LinearGlobal:
    def __init__(self, method: Method, initial: Tensors, frozen: Tensors, scaling: float, rule: str = "mean"):
        self.method = method
        self.tensors = {key: value.astype(np.float32) for key, value in initial.items()}
        self.frozen = frozen  # adapter tensors that never change: lora-fa's A, core's A and B
        self.scaling = scaling
        self.rule = rule  # the weighted mean, or a robust rule (server/robust.py)

    def tensors_for(self, rank: int, targets: str | None = None) -> Tensors:
        return self.tensors  # one rank and one set of layers for every client

    def apply(self, results: list[ClientResult]) -> dict[str, float] | None:
        weights = [result.weight for result in results]
        self.tensors = weighted_mean_update(self.tensors, [result.update for result in results], weights, self.rule)
        if self.method.exact is None:
            return None  # fedsa keeps B on the clients; the baselines have no low-rank update
        target = weighted_products([layer_products({**self.frozen, **r.trained()}, self.scaling) for r in results], weights)
        aggregated = layer_products({**self.frozen, **self.tensors}, self.scaling)
        return relative_errors(aggregated, target)


class ProductGlobal:
    """FlexLoRA: ΔW per layer, truncated per client rank; each client gets the layers its
    device adapts. Until a layer has been trained, clients start from the shared seeded
    initialisation at their rank. A layer's ΔW is averaged over the clients that adapted it.

    What a (rank, targets) receives is computed once per state (one SVD per layer), shared
    by every client that asks for it and by the aggregation error of :meth:`apply`.
    """

    def __init__(self, initial_at_rank: Callable[[int, str | None], Tensors], scaling: float, rule: str = "mean"):
        self.initial_at_rank = initial_at_rank  # (rank, adapter targets) -> the seeded adapters
        self.scaling = scaling
        self.rule = rule  # the weighted mean, or a robust rule (server/robust.py)
        self.products: dict[str, np.ndarray] = {}
        self._received: dict[tuple[int, str | None], Tensors] = {}

    def tensors_for(self, rank: int, targets: str | None = None) -> Tensors:
        if (rank, targets) not in self._received:
            self._received[rank, targets] = self._factors(rank, targets)
        return self._received[rank, targets]

    def _factors(self, rank: int, targets: str | None) -> Tensors:
        tensors = dict(self.initial_at_rank(rank, targets))
        for key in tensors:
            if not is_adapter_key(key):
                continue
            name = split_key(key)
            if name.tensor == A and name.layer in self.products:
                tensors[name.sibling(B)], tensors[key] = truncated_factors(self.products[name.layer], rank, self.scaling)
        return tensors

    def apply(self, results: list[ClientResult]) -> dict[str, float]:
        weights = [result.weight for result in results]
        self.products.update(weighted_products([layer_products(r.trained(), self.scaling) for r in results], weights, self.rule))
        self._received.clear()
        # The aggregate itself is exact; what a client receives loses what its rank cannot hold.
        errors: dict[str, list[tuple[float, float]]] = {}
        for result in results:
            received = layer_products(self.tensors_for(result.rank, result.targets), self.scaling)
            for layer, error in relative_errors(received, {k: self.products[k] for k in received}).items():
                errors.setdefault(layer, []).append((error, result.weight))
        return {layer: sum(e * w for e, w in pairs) / sum(w for _, w in pairs) for layer, pairs in errors.items()}

    @property
    def tensors(self) -> Tensors:
        return {delta_key(layer): product.astype(np.float32) for layer, product in self.products.items()}


def apply_if_finite(state: GlobalState, results: list[ClientResult]) -> tuple[GlobalState, dict[str, float] | None, str | None]:
    """``state`` after the round — or, when its result would not be finite, the state as it
    was — with the aggregation error, and the reason the round was refused (None if not)."""
    if not results:
        return state, None, None
    before = copy.deepcopy(state)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is what the check below looks for
        errors = state.apply(results)
    broken = sorted(key for key, value in state.tensors.items() if not np.isfinite(value).all())
    if not broken:
        return state, errors, None
    shown = ", ".join(broken[:3]) + (" …" if len(broken) > 3 else "")
    return before, None, f"the aggregate is not finite in {shown}: the round is refused, the global state kept"


def save_global(state: GlobalState, path) -> None:
    """The global state as safetensors, written atomically (a temporary file, then a rename):
    saved after every round, so a run that fails later keeps what it trained."""
    import os

    from safetensors.numpy import save

    data = save({key: np.ascontiguousarray(value) for key, value in state.tensors.items()})
    staging = f"{path}.partial"
    with open(staging, "wb") as file:
        file.write(data)
    os.replace(staging, path)
