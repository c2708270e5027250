"""A dry run of one micro-batch on the meta device: what a training step keeps and when.

The planner does not hard-code what a model saves for backward. It runs the model's
forward and backward pass once on PyTorch's meta device — tensors with shapes and dtypes
but no data, so the run allocates nothing and costs milliseconds — with the adapters of a
candidate configuration attached, under the same instruments that measure real steps
(:mod:`fedlora.client.memory_probe`). Autograd itself decides what is saved: the inputs
``x`` and ``Ax`` of each adapter, whatever the layers between the loss and the lowest
adapter need, and nothing below the lowest adapter (no tensor there requires grad).

Gradients are made resident before the run (as from a previous micro-batch), so the trace
holds activations and temporaries only; parameters, gradients, optimizer state and the
input batch are counted by the memory model (:mod:`.memory_model`) from their sizes.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from fedlora.adapters.layer import AdaptedLinear
from fedlora.client.memory_probe import LiveBytes, ModuleScope, SavedBytes
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear, replace_module
from fedlora.tasks.datasets import Batch
from fedlora.train import LossFn, activation_checkpointing

META = torch.device("meta")


@dataclass(frozen=True)
class StepTrace:
    """One micro-batch's forward and backward pass (bytes).

    held_bytes:          alive at the end of the forward pass and kept for backward
    adapter_input_bytes: of those, saved by adapter updates (their ``x`` and ``Ax``)
    peak_bytes:          the most alive at once during forward and backward
    peak_site:           where that was, e.g. ``forward of blocks.0.attn``
    peak_by_site:        what was alive at the peak, by where it was made
    """

    held_bytes: int
    adapter_input_bytes: int
    peak_bytes: int
    peak_site: str
    peak_by_site: dict[str, int]


def meta_base(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device with every adapter taken off (the frozen base)."""
    base = copy.deepcopy(model)
    for name, layer in [(n, m) for n, m in base.named_modules() if isinstance(m, AdaptedLinear)]:
        layer.set_merged(False)
        replace_module(base, name, layer.base)
    return base.to(META).requires_grad_(False).train()


def meta_like(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """A meta tensor like ``tensor`` with ``rows`` examples and the same memory layout (a
    strided view stays strided, so ``reshape`` copies in the dry run when it copies for real)."""
    return torch.empty_strided((rows, *tensor.shape[1:]), tensor.stride(), dtype=tensor.dtype, device=META)


def example_bytes(example: Batch) -> float:
    """Bytes one example of the batch occupies (inputs and targets may share a storage)."""
    inputs, targets = example
    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in (inputs, targets)}
    return sum(storages.values()) / len(targets)


def execution_order(base: nn.Module, example: Batch) -> list[str]:
    """The factorized layers of ``base`` (on meta) in the order the forward pass calls them."""
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda m, args, name=name: order.append(name) if name not in order else None)
        for name, module in base.named_modules()
        if isinstance(module, FactorizedLinear)
    ]
    try:
        with torch.no_grad():
            base(meta_like(example[0], 1))
    except (NotImplementedError, RuntimeError) as exc:
        raise FedloraError(f"the model cannot be dry-run on PyTorch's meta device, so its memory cannot be planned: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()
    return order


def trace_step(model: nn.Module, example: Batch, micro_batch: int, loss_fn: LossFn, checkpointing: bool) -> StepTrace:
    """Dry-run one micro-batch of ``micro_batch`` examples through ``model`` (on meta, with
    adapters attached and only they requiring grad)."""
    inputs, targets = meta_like(example[0], micro_batch), meta_like(example[1], micro_batch)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.grad = torch.zeros_like(parameter)
    scope = ModuleScope(model)
    live, saved = LiveBytes(scope, snapshots=True), SavedBytes(model, scope, also_resident=(inputs, targets))
    try:
        with activation_checkpointing(model) if checkpointing else nullcontext(), saved.active(), live:
            live.phase = "forward"
            loss = loss_fn(model, inputs, targets) * 1.0  # train_step weighs each micro-batch's loss
            held, adapter_inputs = live.now, saved.adapter_now
            live.phase = "backward"
            loss.backward()
    except (NotImplementedError, RuntimeError) as exc:
        raise FedloraError(f"the model cannot be dry-run on PyTorch's meta device, so its memory cannot be planned: {exc}") from exc
    finally:
        scope.close()
    return StepTrace(held, adapter_inputs, live.peak, live.peak_site, live.peak_by_site)
