"""Healing: a short distillation of the factorized model towards the dense one.

Truncating singular values changes every layer a little; the errors compound through the
network. A few hundred steps on public data, matching the dense model's output
distribution (KL divergence, teacher → student), recover most of the loss. Only the
factorized layers' factors and biases train; everything else stays as pretrained.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedlora.factorize import factorized_layers
from fedlora.tasks.datasets import Dataset
from fedlora.train import TrainConfig, train


def distillation_loss(teacher: nn.Module) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss(student: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_logits = teacher(inputs)
        student_logits = student(inputs)
        classes = student_logits.shape[-1]
        return F.kl_div(
            F.log_softmax(student_logits.reshape(-1, classes), -1),
            F.log_softmax(target_logits.reshape(-1, classes), -1),
            log_target=True,
            reduction="batchmean",
        )

    return loss


def heal(
    student: nn.Module,
    teacher: nn.Module,
    data: Dataset,
    config: TrainConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> float:
    """Distil ``teacher`` into ``student``'s factorized layers; returns the mean loss."""
    teacher.eval()
    student.requires_grad_(False)
    for layer in factorized_layers(student).values():
        layer.requires_grad_(True)
    try:
        return train(student, data, config, seed=seed, loss_fn=distillation_loss(teacher), on_step=on_step)
    finally:
        student.requires_grad_(False)
