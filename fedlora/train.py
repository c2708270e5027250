"""The training loop every part of fedlora shares: pretraining, healing, local fine-tuning.

It optimises exactly the parameters that require gradients, so what trains is decided by
freezing (``attach_adapters`` freezes all but the adapters), not by this loop. A step may be
split into micro-batches whose gradients accumulate, which is how a memory-budgeted client
trains a large effective batch with little RAM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from fedlora.errors import FedloraError
from fedlora.metrics import cross_entropy
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
    buffer per parameter) or ``adam`` (two); grad_clip: max global gradient norm (0 = off)."""

    steps: int = 20
    batch_size: int = 16
    lr: float = 1e-2
    optimizer: Optimizer = "adam"
    micro_batch: int | None = None
    grad_clip: float = 1.0

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
        return torch.optim.Adam(parameters, lr=config.lr)
    momentum = 0.9 if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(parameters, lr=config.lr, momentum=momentum)


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
    micro = config.micro_batch or config.batch_size
    model.train()
    losses = []
    for step in range(config.steps):
        optimizer.zero_grad(set_to_none=True)
        inputs, targets = data.sample(config.batch_size, generator)
        step_loss = 0.0
        for start in range(0, config.batch_size, micro):
            chunk = slice(start, start + micro)
            weight = len(targets[chunk]) / config.batch_size
            loss = loss_fn(model, inputs[chunk], targets[chunk]) * weight
            loss.backward()
            step_loss += loss.item()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        losses.append(step_loss)
        if on_step is not None:
            on_step(step, step_loss)
    return sum(losses) / len(losses) if losses else float("nan")
