"""Low-rank adapters trained on top of the frozen factorized base.

``config`` says what to attach, ``keys`` how adapter tensors are named, ``update`` is one low-rank update, ``layer`` is one adapted
layer (a frozen base plus named updates), ``model`` attaches adapters to a whole model and
moves their state in and out by name.
"""

from fedlora.adapters.config import AdapterConfig
from fedlora.adapters.keys import ADAPTER_PREFIX
from fedlora.adapters.layer import AdaptedLinear
from fedlora.adapters.model import (
    GLOBAL,
    PERSONAL,
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
    "GLOBAL",
    "PERSONAL",
    "adapted_layers",
    "adapter_state",
    "attach_adapters",
    "load_adapter_state",
    "set_merged",
]
