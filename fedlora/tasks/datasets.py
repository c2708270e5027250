"""The two shapes of data the built-in tasks have: labelled examples and token streams.

Both answer the same three questions — how many examples, a random batch, and a fixed
pass over everything for evaluation — so trainers and metrics never special-case a task.
Models map ``inputs`` to logits whose last dimension is the class (or vocabulary) axis and
whose leading dimensions match ``targets``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class Dataset(ABC):
    @abstractmethod
    def __len__(self) -> int:
        """Number of training examples; the FedAvg weight ``num-examples``."""

    @abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A random batch (with replacement), drawn with ``generator``."""

    @abstractmethod
    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """A deterministic pass over all the data, for metrics."""


class LabelledDataset(Dataset):
    """Feature vectors with integer labels: ``inputs`` (N, ...) float32, ``targets`` (N,)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs.float()
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        index = torch.randint(len(self), (batch_size,), generator=generator)
        return self.inputs[index], self.targets[index]

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self), batch_size):
            yield self.inputs[start : start + batch_size], self.targets[start : start + batch_size]


class TokenStream(Dataset):
    """A 1-D stream of token ids read as next-token windows of ``context`` tokens.

    A window starting at ``i`` has inputs ``tokens[i : i+context]`` and targets
    ``tokens[i+1 : i+context+1]``. Its length counts non-overlapping windows, which is
    also what ``eval_batches`` visits, so every held-out token is scored exactly once.
    """

    def __init__(self, tokens: torch.Tensor, context: int):
        if tokens.dim() != 1:
            raise ValueError(f"token stream must be 1-D, got shape {tuple(tokens.shape)}")
        if len(tokens) < context + 1:
            raise ValueError(f"{len(tokens)} tokens is too few for context {context}")
        self.tokens = tokens.long()
        self.context = context

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.context

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        starts = torch.randint(len(self.tokens) - self.context, (batch_size,), generator=generator)
        return self._windows(starts)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        starts = torch.arange(len(self)) * self.context
        for first in range(0, len(starts), batch_size):
            yield self._windows(starts[first : first + batch_size])

    def _windows(self, starts: torch.Tensor) -> Batch:
        offsets = torch.arange(self.context + 1)
        windows = self.tokens[starts[:, None] + offsets]  # (B, context+1)
        return windows[:, :-1], windows[:, 1:]


def dataset_digest(data: Dataset) -> str:
    """SHA-256 of a dataset's tensors: identifies data for cache keys."""
    import hashlib

    digest = hashlib.sha256(type(data).__name__.encode())
    for tensor in vars(data).values():
        if isinstance(tensor, torch.Tensor):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().numpy().tobytes())
        else:
            digest.update(repr(tensor).encode())
    return digest.hexdigest()
