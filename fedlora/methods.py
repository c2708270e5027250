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

from fedlora.adapters.config import Variant
from fedlora.adapters.model import GLOBAL, is_adapter_key
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
    #: each client may train its own rank
    heterogeneous_rank: bool = False

    @property
    def is_baseline(self) -> bool:
        return self.name in BASELINES

    def travels(self, key: str) -> bool:
        """Whether the model tensor ``key`` is exchanged with the server: for adapter
        methods, the federated tensors of the global adapter; for ``full``, everything."""
        if self.variant is None:
            return True
        return is_adapter_key(key, GLOBAL) and key.rpartition(".")[2] in self.federated


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("fedit", "lora", ("lora_A", "lora_B"), exact=False),
        Method("ffa", "lora-fa", ("lora_B",), exact=True),
        Method("core", "core", ("lora_R",), exact=True),
        Method("fedsa", "lora", ("lora_A",), exact=None),
        Method("flexlora", "lora", ("lora_A", "lora_B"), exact=True, heterogeneous_rank=True),
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
