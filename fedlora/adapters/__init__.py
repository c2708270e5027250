"""Low-rank adapters trained on top of the frozen factorized base.

``config`` says what to attach, ``layer`` is one adapted layer, ``model`` attaches
adapters to a whole model and moves their state in and out by name.
"""

from fedlora.adapters.config import ADAPTER_PREFIX, AdapterConfig
from fedlora.adapters.layer import AdaptedLinear
from fedlora.adapters.model import (
    adapted_layers,
    adapter_state,
    attach_adapters,
    load_adapter_state,
    set_merged,
)

__all__ = [
    "ADAPTER_PREFIX",
    "AdaptedLinear",
    "AdapterConfig",
    "adapted_layers",
    "adapter_state",
    "attach_adapters",
    "load_adapter_state",
    "set_merged",
]
