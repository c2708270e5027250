"""The names of adapter tensors: one grammar, built and split here only.

An adapter tensor of a model is named ``<layer>.adapters.<adapter>.lora_<X>``::

    blocks.0.ffn.fc2.adapters.global.lora_A
    └─── layer ────┘          └adapter┘└tensor┘

with ``X`` one of ``A`` (r×n), ``B`` (m×r), ``R`` (core's r×r). Every adapter tensor's own
name starts with ``lora_``, so a model's adapter state is a filter on its ``state_dict``.
The flexlora server keeps one aggregated update per layer, named ``<layer>.delta``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedlora.errors import FedloraError

#: every adapter tensor's own name starts with this, so adapter state is a name filter
ADAPTER_PREFIX = "lora_"
A, B, R = "lora_A", "lora_B", "lora_R"
_ADAPTERS = ".adapters."
_DELTA = ".delta"


@dataclass(frozen=True)
class AdapterKey:
    layer: str
    adapter: str
    tensor: str  # lora_A, lora_B, lora_R

    def __str__(self) -> str:
        return adapter_key(self.layer, self.adapter, self.tensor)

    def sibling(self, tensor: str) -> str:
        """The name of another tensor of the same adapter (``lora_A`` → ``lora_B``)."""
        return adapter_key(self.layer, self.adapter, tensor)


def adapter_key(layer: str, adapter: str, tensor: str) -> str:
    return f"{layer}{_ADAPTERS}{adapter}.{tensor}"


def is_adapter_key(key: str, adapter: str | None = None) -> bool:
    if not key.rpartition(".")[2].startswith(ADAPTER_PREFIX):
        return False
    return adapter is None or f"{_ADAPTERS}{adapter}." in key


def split_key(key: str) -> AdapterKey:
    """``blocks.0.attn.q.adapters.global.lora_A`` → (``blocks.0.attn.q``, ``global``, ``lora_A``)."""
    layer, found, rest = key.partition(_ADAPTERS)
    adapter, _, tensor = rest.rpartition(".")
    if not found or not adapter or not tensor.startswith(ADAPTER_PREFIX):
        raise ValueError(f"{key!r} is not an adapter tensor name (<layer>.adapters.<adapter>.lora_<X>)")
    return AdapterKey(layer, adapter, tensor)


def layer_of(key: str) -> str:
    """The layer an adapter tensor belongs to."""
    return split_key(key).layer


def delta_key(layer: str) -> str:
    return layer + _DELTA


def layer_of_delta(key: str) -> str:
    if not key.endswith(_DELTA):
        raise ValueError(f"{key!r} is not an aggregated update name (<layer>.delta)")
    return key.removesuffix(_DELTA)


def layer_pattern(targets: str, option: str = "--targets") -> re.Pattern:
    """The regular expression that picks adapted layers by name (``re.search``), or a
    FedloraError naming ``option`` when ``targets`` is none."""
    try:
        return re.compile(targets)
    except re.error as error:
        raise FedloraError(f"{option} {targets!r} is not a regular expression ({error}); e.g. 'ffn\\.fc2$'") from None
