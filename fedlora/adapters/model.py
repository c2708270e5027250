"""Attach adapters to a whole model and move their state in and out by name.

Every adapter tensor is named ``<layer>.lora_<X>``, so the adapter state of a model is
the subset of its ``state_dict`` whose last name component starts with ``lora_``.
Names, never positions, identify tensors: payloads survive reordering.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from fedlora.adapters.config import ADAPTER_PREFIX, AdapterConfig
from fedlora.adapters.layer import AdaptedLinear
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear, replace_module


def is_adapter_key(key: str) -> bool:
    return key.rpartition(".")[2].startswith(ADAPTER_PREFIX)


def attach_adapters(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Wrap the chosen factorized layers of ``model`` with adapters; freeze everything else.

    Returns the adapted layer names in model order. Afterwards only adapter parameters
    require gradients.
    """
    pattern = re.compile(config.targets) if config.targets else None
    chosen = [
        name
        for name, module in model.named_modules()
        if isinstance(module, FactorizedLinear) and (pattern is None or pattern.search(name))
    ]
    if not chosen:
        raise FedloraError(
            f"no factorized layer matches adapter targets {config.targets!r}; "
            f"factorized layers are: {', '.join(n for n, m in model.named_modules() if isinstance(m, FactorizedLinear))}"
        )
    # Build every wrapper before replacing any, so a rank that does not fit one layer
    # leaves the whole model untouched.
    wrappers = {name: AdaptedLinear(model.get_submodule(name), config, name) for name in chosen}
    model.requires_grad_(False)
    for name, wrapper in wrappers.items():
        replace_module(model, name, wrapper)
    return chosen


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaptedLinear)}


def adapter_state(model: nn.Module, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """Adapter tensors by name (detached copies). ``trainable_only`` drops frozen A/B."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {
        key: value.detach().clone()
        for key, value in model.state_dict().items()
        if is_adapter_key(key) and (not trainable_only or key in trainable)
    }


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Copy adapter tensors into ``model`` by name, checking names and shapes first.

    ``strict`` requires every key in ``state`` to be an adapter tensor of the model;
    keys of the model that ``state`` does not mention keep their values (a client may load
    only the federated part of its adapters).
    """
    own = {key: value for key, value in model.state_dict().items() if is_adapter_key(key)}
    unknown = sorted(set(state) - set(own))
    if unknown and strict:
        raise FedloraError(f"adapter state has keys this model does not have: {', '.join(unknown[:5])}")
    wrong = [
        f"{key}: got {tuple(value.shape)}, expected {tuple(own[key].shape)}"
        for key, value in state.items()
        if key in own and tuple(value.shape) != tuple(own[key].shape)
    ]
    if wrong:
        raise FedloraError("adapter state has wrong shapes: " + "; ".join(wrong[:5]))
    with torch.no_grad():
        for key, value in state.items():
            if key in own:
                own[key].copy_(value)


def set_merged(model: nn.Module, merged: bool) -> None:
    """Merge every adapter into its factors, or unmerge them all."""
    for layer in adapted_layers(model).values():
        layer.set_merged(merged)
