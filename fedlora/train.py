"""The training loop every part of fedlora shares: pretraining, healing, local fine-tuning.

It optimises exactly the parameters that require gradients, so what trains is decided by
freezing (``attach_adapters`` freezes all but the adapters), not by this loop. A step may be
split into micro-batches whose gradients accumulate, which is how a memory-budgeted client
trains a large effective batch with little RAM; activation checkpointing (recomputing each
repeated block's activations during backward instead of keeping them) is the other lever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from fedlora.errors import FedloraError
from fedlora.metrics import cross_entropy
from fedlora.optim import SGD, Adam
from fedlora.tasks.base import manual_seed_generator
from fedlora.tasks.datasets import Dataset

Optimizer = Literal["sgd", "momentum", "adam"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")

#: loss(model, inputs, targets) -> scalar tensor
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def task_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return cross_entropy(model(inputs), targets)


@dataclass(frozen=True)
class TrainConfig:
    """steps: optimizer steps; batch_size: examples per step; micro_batch: examples per
    forward/backward (gradients accumulate over ``batch_size / micro_batch`` passes; None
    means one pass); lr: learning rate; optimizer: ``sgd`` (no state), ``momentum`` (one
    buffer per parameter) or ``adam`` (two); grad_clip: max global gradient norm (0 = off);
    checkpointing: recompute the activations of each repeated block (see
    :func:`checkpoint_units`) during backward instead of keeping them — less memory, one
    extra forward pass of compute, the same gradients."""

    steps: int = 20
    batch_size: int = 16
    lr: float = 1e-2
    optimizer: Optimizer = "adam"
    micro_batch: int | None = None
    grad_clip: float = 1.0
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise FedloraError(f"steps must be ≥ 0, got {self.steps}")
        if self.batch_size < 1:
            raise FedloraError(f"batch size must be ≥ 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise FedloraError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.lr <= 0:
            raise FedloraError(f"learning rate must be > 0, got {self.lr}")
        if self.micro_batch is not None and not (1 <= self.micro_batch <= self.batch_size):
            raise FedloraError(f"micro-batch must be in [1, batch size {self.batch_size}], got {self.micro_batch}")

    @property
    def accumulation(self) -> int:
        """Forward/backward passes per optimizer step."""
        micro = self.micro_batch or self.batch_size
        return -(-self.batch_size // micro)


def make_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return Adam(parameters, lr=config.lr)
    momentum = 0.9 if config.optimizer == "momentum" else 0.0
    return SGD(parameters, lr=config.lr, momentum=momentum)


def checkpoint_units(model: nn.Module) -> list[nn.Module]:
    """The blocks that activation checkpointing wraps: the entries of the model's first
    ``nn.ModuleList`` or ``nn.Sequential`` (in ``modules()`` order) with at least two entries
    — a transformer's blocks, a sequential network's layers. Empty when there is none."""
    for module in model.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) >= 2:
            return list(module)
    return []


def _checkpointed(forward: Callable, *args, **kwargs):
    # non-reentrant: works when the block's inputs do not require grad (adapters inside a
    # frozen network) and composes with saved-tensor hooks
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


@contextmanager
def activation_checkpointing(model: nn.Module) -> Iterator[None]:
    """While active, every checkpoint unit of ``model`` keeps only its inputs for backward and
    recomputes the rest. The units' ``forward`` is restored on exit."""
    units = checkpoint_units(model)
    if not units:
        raise FedloraError(
            f"activation checkpointing needs repeated blocks (an nn.ModuleList or nn.Sequential with at least two "
            f"entries), and {type(model).__name__} has none; train without checkpointing"
        )
    own = [unit.__dict__.get("forward") for unit in units]  # normally None: forward is the class's
    for unit in units:
        unit.forward = partial(_checkpointed, unit.forward)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for unit, forward in zip(units, own):
            if forward is None:
                del unit.forward
            else:
                unit.forward = forward


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    loss_fn: LossFn = task_loss,
) -> float:
    """One optimizer step on one batch: gradients accumulate over micro-batches, then are
    clipped and applied. Returns the batch's loss."""
    optimizer.zero_grad(set_to_none=True)
    micro = config.micro_batch or config.batch_size
    step_loss = 0.0
    for start in range(0, len(targets), micro):
        chunk = slice(start, start + micro)
        weight = len(targets[chunk]) / len(targets)
        loss = loss_fn(model, inputs[chunk], targets[chunk]) * weight
        loss.backward()
        step_loss += loss.item()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
    optimizer.step()
    return step_loss


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    seed: int,
    loss_fn: LossFn = task_loss,
    on_step: Callable[[int, float], None] | None = None,
) -> float:
    """Run ``config.steps`` optimizer steps on batches drawn from ``data`` with ``seed``.

    Returns the mean training loss over the steps (nan when there were none).
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise FedloraError("nothing to train: no parameter of the model requires gradients")
    optimizer = make_optimizer(parameters, config)
    generator = manual_seed_generator(seed)
    model.train()
    losses = []
    with activation_checkpointing(model) if config.checkpointing else nullcontext():
        for step in range(config.steps):
            inputs, targets = data.sample(config.batch_size, generator)
            step_loss = train_step(model, optimizer, parameters, inputs, targets, config, loss_fn)
            losses.append(step_loss)
            if on_step is not None:
                on_step(step, step_loss)
    return sum(losses) / len(losses) if losses else float("nan")
