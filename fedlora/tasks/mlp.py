"""The small multi-layer perceptron of the ``digits`` and ``synthetic`` tasks.

Layers are named ``fc1``, ``fc2``, ... for the hidden layers and ``head`` for the
classifier, so the default adapter targets are simply the hidden layers (``^fc\\d+$``) and
the head stays dense, as in the transformer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: the hidden ``nn.Linear`` layers of an :class:`MLP`
HIDDEN_LAYERS = r"^fc\d+$"


class MLP(nn.Module):
    """``in_features → hidden[0] → ... → hidden[-1] → num_classes`` with ReLU between layers."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int):
        super().__init__()
        widths = [in_features, *hidden]
        for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(fan_in, fan_out))
        self.num_hidden = len(hidden)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, in_features), whatever the example shape
        for i in range(1, self.num_hidden + 1):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return self.head(x)  # (N, num_classes)
