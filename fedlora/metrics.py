"""Task metrics: accuracy, mean cross-entropy and perplexity over a dataset.

Every built-in task is scored the same way — the fraction of targets predicted top-1 and
the mean per-target cross-entropy — so one function serves classification and next-token
prediction alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fedlora.tasks.datasets import Dataset

#: perplexity is exp(loss), and math.exp raises OverflowError above ~709 nats: a diverged
#: model's loss is capped here first, so its perplexity stays a finite number (e^50 ≈ 5e21)
#: far above any model that learned anything (a uniform guess over V classes scores ln V)
PERPLEXITY_LOSS_CAP = 50.0


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; logits (..., C), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 64) -> dict[str, float]:
    """``accuracy``, ``loss`` (nats per target) and ``perplexity`` of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for inputs, targets in data.eval_batches(batch_size):
        logits = model(inputs)
        flat_logits = logits.reshape(-1, logits.shape[-1])
        flat_targets = targets.reshape(-1)
        loss_sum += F.cross_entropy(flat_logits, flat_targets, reduction="sum").item()
        correct += (flat_logits.argmax(-1) == flat_targets).sum().item()
        total += flat_targets.numel()
    model.train(was_training)
    loss = loss_sum / max(total, 1)
    return {"accuracy": correct / max(total, 1), "loss": loss, "perplexity": math.exp(min(loss, PERPLEXITY_LOSS_CAP))}
