"""Federation methods: what a client trains and which of its tensors travel.

| method   | adapter  | travels   | server rule                                  | exact? |
|----------|----------|-----------|----------------------------------------------|--------|
| fedit    | lora     | A, B      | average A and B separately                   | no     |
| ffa      | lora-fa  | B         | average B (A frozen, shared by seed)         | yes    |
| core     | core     | R         | average R between fixed singular subspaces   | yes    |
| fedsa    | lora     | A         | average A; B stays on the device             | —      |
| flexlora | lora     | A, B      | SVD of Σ p_k·B_k·A_k, truncated per client   | up to truncation |

Two baselines run through the same machinery: ``full`` — FedAvg of the whole dense
fp32 model, every weight trained and exchanged — and ``local`` — adapters trained on
each client alone, nothing federated.

Trainable adapter tensors that do not travel (fedsa's B, everything in ``local``) stay
on the client between rounds, in its persistent state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedlora.adapters.config import Variant
from fedlora.adapters.keys import A, B, R, is_adapter_key, split_key
from fedlora.adapters.model import GLOBAL
from fedlora.errors import FedloraError


@dataclass(frozen=True)
class Method:
    name: str
    #: adapter variant the clients train (None: the dense model itself, no adapters)
    variant: Variant | None
    #: adapter tensors that travel, by their name (``lora_A``, ``lora_B``, ``lora_R``)
    federated: tuple[str, ...]
    #: whether the aggregate equals Σ p_k·B_k·A_k (None: not defined for this method)
    exact: bool | None
    #: the server's rule: ``mean`` of the travelling tensors, or ``product`` — the mean of
    #: each layer's ΔW = s·B·A, handed back truncated to each client's rank
    rule: Literal["mean", "product"] = "mean"

    @property
    def is_baseline(self) -> bool:
        return self.name in BASELINES

    @property
    def dense(self) -> bool:
        """The whole dense model trains and travels (full-model FedAvg): no adapters, no base."""
        return self.variant is None

    @property
    def trains_alone(self) -> bool:
        """Adapters train, nothing travels (the local-only baseline)."""
        return self.variant is not None and not self.federated

    @property
    def heterogeneous_rank(self) -> bool:
        """Each client may train its own rank and layers: only products of different ranks
        can be averaged."""
        return self.rule == "product"

    def travels(self, key: str) -> bool:
        """Whether the model tensor ``key`` is exchanged with the server: for adapter
        methods, the federated tensors of the global adapter; for ``full``, everything."""
        if self.dense:
            return True
        return is_adapter_key(key, GLOBAL) and split_key(key).tensor in self.federated


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("fedit", "lora", (A, B), exact=False),
        Method("ffa", "lora-fa", (B,), exact=True),
        Method("core", "core", (R,), exact=True),
        Method("fedsa", "lora", (A,), exact=None),
        Method("flexlora", "lora", (A, B), exact=True, rule="product"),
        Method("local", "lora", (), exact=None),
        Method("full", None, (), exact=None),
    )
}
BASELINES = ("full", "local")
ADAPTER_METHODS = tuple(name for name in METHODS if name not in BASELINES)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise FedloraError(f"unknown method {name!r}; choose one of {', '.join(ADAPTER_METHODS)}")
    return METHODS[name]
