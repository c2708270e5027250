"""Attach adapters to a whole model and move their state in and out by name.

Adapter tensors are named by the grammar of :mod:`fedlora.adapters.keys`: the adapter
state of a model is the subset of its ``state_dict`` whose names are adapter keys,
optionally narrowed to one adapter. Names, never positions, identify tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from fedlora.adapters.config import AdapterConfig
from fedlora.adapters.keys import is_adapter_key, layer_pattern
from fedlora.adapters.layer import AdaptedLinear
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear, replace_module

GLOBAL = "global"
PERSONAL = "personal"


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaptedLinear)}


def attach_adapters(model: nn.Module, config: AdapterConfig, adapter: str = GLOBAL) -> list[str]:
    """Add adapter ``adapter`` to the chosen factorized layers of ``model``; freeze the rest.

    Returns the adapted layer names in model order. Afterwards only adapter parameters
    require gradients.
    """
    pattern = layer_pattern(config.targets) if config.targets else None
    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (FactorizedLinear, AdaptedLinear))
        and not name.endswith(".base")
        and (pattern is None or pattern.search(name))
    }
    if not layers:
        factorized = [n for n, m in model.named_modules() if isinstance(m, FactorizedLinear)]
        raise FedloraError(
            f"no factorized layer matches adapter targets {config.targets!r}; factorized layers are: {', '.join(factorized)}"
        )
    # Check every layer before touching the model, so a rank that does not fit one layer
    # leaves the whole model untouched.
    wrapped = {name: m if isinstance(m, AdaptedLinear) else AdaptedLinear(m, name) for name, m in layers.items()}
    for layer in wrapped.values():
        layer.check_adapter(adapter, config)
    model.requires_grad_(False)
    for name, layer in wrapped.items():
        layer.add_adapter(adapter, config)
        if layer is not layers[name]:
            replace_module(model, name, layer)
    # Adapter parameters are exactly what trains; frozen adapter tensors are buffers.
    for layer in adapted_layers(model).values():
        layer.adapters.requires_grad_(True)
    return list(wrapped)


def adapter_state(model: nn.Module, adapter: str | None = None, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """Adapter tensors by name (detached copies), of one adapter or all; ``trainable_only``
    drops frozen tensors (lora-fa's A, core's A and B)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {
        key: value.detach().clone()
        for key, value in model.state_dict().items()
        if is_adapter_key(key, adapter) and (not trainable_only or key in trainable)
    }


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Copy adapter tensors into ``model`` by name, checking names and shapes first.

    ``strict`` requires every key in ``state`` to be an adapter tensor of the model; the
    model's adapter tensors that ``state`` does not mention keep their values (a client
    loads the federated part and the personal part separately).
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
