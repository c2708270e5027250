"""Measure what a training step really holds in memory.

Two instruments, used by :func:`measure_training` on real tensors and by the planner's
dry run (:mod:`fedlora.client.memory_trace`) on meta tensors:

- :class:`LiveBytes` sees every tensor an operator allocates (a ``TorchDispatchMode``) and
  follows its storage until it is freed (a weak reference to the storage), so it knows the
  bytes alive at any moment and their peak — activations, temporaries, gradients and
  optimizer state alike. Outputs that share storage with an input (views, in-place ops)
  allocate nothing and are not counted; tensors that existed before it started (parameters,
  buffers) are not counted either.
- :class:`SavedBytes` counts the tensors autograd saves for backward
  (``torch.autograd.graph.saved_tensors_hooks``), once per storage, leaving out the
  model's own parameters and buffers, and remembers whether an adapter saved them.

:func:`measure_training` runs fedlora's own :func:`fedlora.train.train` for two steps and
measures the second (the first creates the optimizer state, as every later step finds it).
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from fedlora.adapters.keys import is_adapter_key
from fedlora.adapters.update import LowRankUpdate
from fedlora.optim import Adam
from fedlora.tasks.datasets import Dataset
from fedlora.train import LossFn, TrainConfig, task_loss, train


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[id(storage)] = storage.nbytes()
    return sum(storages.values())


class StorageLedger:
    """Storages followed until they are freed, each with a tag: their bytes now, and the peak.

    A storage is followed through a weak reference, whose callback fires when torch frees
    it (storages keep their Python object for as long as they live, so the id is stable).
    """

    def __init__(self):
        self.entries: dict[int, tuple[int, object]] = {}  # id(storage) -> (bytes, tag)
        self._refs: dict[int, weakref.ref] = {}
        self.now = 0
        self.peak = 0

    def add(self, storage: torch.UntypedStorage, tag: object) -> bool:
        """Follow ``storage`` (once); True when this set a new peak."""
        key = id(storage)
        if key in self.entries:
            return False
        self.entries[key] = (storage.nbytes(), tag)
        self._refs[key] = weakref.ref(storage, partial(self._freed, key))
        self.now += storage.nbytes()
        if self.now <= self.peak:
            return False
        self.peak = self.now
        return True

    def _freed(self, key: int, ref: weakref.ref) -> None:
        size, _ = self.entries.pop(key)
        del self._refs[key]
        self.now -= size

    def reset_peak(self) -> None:
        self.peak = self.now

    def bytes_by_tag(self) -> Counter:
        totals: Counter = Counter()
        for size, tag in self.entries.values():
            totals[tag] += size
        return totals


class ModuleScope:
    """Which module is running now: a stack of (name, module) kept by forward hooks."""

    def __init__(self, model: nn.Module):
        self.stack: list[tuple[str, nn.Module]] = []
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(partial(self._enter, name)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str, module: nn.Module, args) -> None:
        self.stack.append((name, module))

    def _leave(self, module: nn.Module, args, output) -> None:  # returns None: the output stays
        self.stack.pop()

    @property
    def in_adapter(self) -> bool:
        """Whether an adapter update runs (what it saves are its ``x`` and ``Ax``)."""
        return bool(self.stack) and isinstance(self.stack[-1][1], LowRankUpdate)

    @property
    def block(self) -> str:
        """The running module, cut to three name components (``blocks.0.attn`` while inside
        ``blocks.0.attn.q.base``): specific enough to point at, short enough to read."""
        names = [name for name, _ in self.stack if name]
        return ".".join(names[-1].split(".")[:3]) if names else ""

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class LiveBytes(TorchDispatchMode):
    """Bytes of tensors allocated while active and still alive; their peak; where it was.

    ``phase`` is set by the caller (forward, backward, ...); with a :class:`ModuleScope`
    every allocation is tagged ``"<phase> of <module>"``, and with ``snapshots`` the bytes
    alive at the peak are kept by tag.
    """

    def __init__(self, scope: ModuleScope | None = None, snapshots: bool = False):
        super().__init__()
        self.scope = scope
        self.snapshots = snapshots
        self.phase = ""
        self.ledger = StorageLedger()
        self.peak_site = ""
        self.peak_by_site: dict[str, int] = {}

    @property
    def now(self) -> int:
        return self.ledger.now

    @property
    def peak(self) -> int:
        return self.ledger.peak

    def site(self) -> str:
        where = self.scope.block if self.scope is not None else ""
        return f"{self.phase} of {where}" if where and self.phase else (where or self.phase or "step")

    def reset_peak(self) -> None:
        self.ledger.reset_peak()
        self.peak_site = self.site()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in _tensors((args, kwargs))}
        for tensor in _tensors(out):
            storage = tensor.untyped_storage()
            if id(storage) not in inputs and self.ledger.add(storage, site := self.site()):
                self.peak_site = site
                if self.snapshots:
                    self.peak_by_site = dict(self.ledger.bytes_by_tag())
        return out


def _tensors(value) -> Iterator[torch.Tensor]:
    """The tensors in an operator's arguments or results (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class SavedBytes:
    """Bytes autograd holds for backward (once per storage), tagged by whether an adapter
    saved them. The model's parameters and buffers (and ``also_resident``) are not counted."""

    def __init__(self, model: nn.Module, scope: ModuleScope | None = None, also_resident: tuple[torch.Tensor, ...] = ()):
        self.scope = scope
        self._resident = {id(t.untyped_storage()) for t in [*model.parameters(), *model.buffers(), *also_resident]}
        self.ledger = StorageLedger()

    @property
    def peak(self) -> int:
        return self.ledger.peak

    @property
    def adapter_now(self) -> int:
        """Bytes saved by adapter updates and still held."""
        return self.ledger.bytes_by_tag()[True]

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if id(storage) not in self._resident:
            self.ledger.add(storage, self.scope is not None and self.scope.in_adapter)
        return tensor

    @contextmanager
    def active(self) -> Iterator[SavedBytes]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield self


@dataclass(frozen=True)
class Measurement:
    """The measured memory of one training step of :func:`fedlora.train.train` (bytes).

    adapter_bytes:   adapter tensors (trained and frozen ones), resident all along
    frozen_bytes:    everything else the torch model holds (the base, dequantized to float32
                     — on a microcontroller the base is INT8 in flash instead)
    gradient_bytes:  gradients of the trained tensors
    optimizer_bytes: optimizer state
    saved_bytes:     peak of the tensors autograd saved for backward
    held_bytes:      bytes a micro-batch's forward pass left alive for backward (saved
                     tensors plus what checkpointing keeps), the largest over micro-batches
    step_peak_bytes: peak of the tensors allocated by the step itself and alive at once
                     (activations, temporaries, gradients, optimizer state)
    peak_site:       where that peak was, e.g. ``forward of blocks.0.attn``
    optimizer:       the optimizer that ran (``sgd``, ``momentum``, ``adam``)
    passes:          forward passes per optimizer step (the gradient accumulation)
    """

    adapter_bytes: int
    frozen_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    saved_bytes: int
    held_bytes: int
    step_peak_bytes: int
    peak_site: str
    optimizer: str
    passes: int

    @property
    def peak_bytes(self) -> int:
        """What the step needs in RAM besides the frozen base: adapters plus the step's peak.
        Comparable with the memory model's ``MemoryBreakdown.host_bytes``."""
        return self.adapter_bytes + self.step_peak_bytes


def _optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    if isinstance(optimizer, Adam):
        return "adam"
    return "momentum" if optimizer.param_groups[0].get("momentum", 0) else "sgd"


def measure_training(
    model: nn.Module, data: Dataset, config: TrainConfig, seed: int = 0, loss_fn: LossFn = task_loss
) -> Measurement:
    """Run :func:`fedlora.train.train` for two steps of ``config`` on a copy of ``model`` and
    measure the second step. ``model`` itself is not changed."""
    model = copy.deepcopy(model)
    adapter = [t for name, t in [*model.named_parameters(), *model.named_buffers()] if is_adapter_key(name) or t.requires_grad]
    adapter_ids = {id(t) for t in adapter}
    frozen = [t for t in [*model.parameters(), *model.buffers()] if id(t) not in adapter_ids]
    scope = ModuleScope(model)
    live, saved = LiveBytes(scope), SavedBytes(model, scope)
    optimizers: list[torch.optim.Optimizer] = []
    hooks = [
        register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: setattr(live, "phase", "optimizer update")),
        register_optimizer_step_post_hook(lambda optimizer, args, kwargs: optimizers.append(optimizer)),
    ]
    measuring, held, passes = False, 0, 0

    def measured_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        nonlocal held, passes
        start, live.phase = live.now, "forward"
        loss = loss_fn(model, inputs, targets)
        live.phase = "backward"  # train_step calls backward next (then the optimizer's pre-hook)
        if measuring:
            held, passes = max(held, live.now - start), passes + 1
        return loss

    def on_step(step: int, loss: float) -> None:
        nonlocal measuring
        if step == 0:  # the first step made the optimizer state; measure the second
            measuring = True
            live.reset_peak()
            saved.ledger.reset_peak()

    try:
        with saved.active(), live:
            train(model, data, dataclasses.replace(config, steps=2), seed=seed, loss_fn=measured_loss, on_step=on_step)
    finally:
        for hook in hooks:
            hook.remove()
        scope.close()
    optimizer = optimizers[-1]
    state = [value for per_param in optimizer.state.values() for value in per_param.values() if isinstance(value, torch.Tensor)]
    return Measurement(
        adapter_bytes=storage_bytes(adapter),
        frozen_bytes=storage_bytes(frozen),
        gradient_bytes=storage_bytes([p.grad for p in model.parameters() if p.grad is not None]),
        optimizer_bytes=storage_bytes(state),
        saved_bytes=saved.peak,
        held_bytes=held,
        step_peak_bytes=live.peak,
        peak_site=live.peak_site,
        optimizer=_optimizer_name(optimizer),
        passes=passes,
    )
