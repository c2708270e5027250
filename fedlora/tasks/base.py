"""What a task is: a model factory, client partitions, the server's public data, a metric.

A task is everything fedlora needs to know about a learning problem. The built-in tasks
(``textlm``, ``digits``, ``synthetic``) and user tasks plugged in by dotted path implement
the same small interface below. All data is local: a task never downloads anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fedlora.tasks.datasets import Dataset


@dataclass(frozen=True)
class Partition:
    """One party's data: a training set and a held-out test set.

    ``name`` is stable and human-readable (``"stdlib:json"``, ``"digits:7"``), so results
    and error messages can say which client they are about.
    """

    name: str
    train: Dataset
    test: Dataset


class Task(ABC):
    """A federated learning problem.

    Subclasses are constructed with ``(num_clients=..., seed=..., **options)`` and must be
    deterministic: the same arguments give the same partitions, byte for byte.
    """

    #: registry name, e.g. ``"textlm"``
    name: ClassVar[str]
    #: regular expression matched (``re.search``) against ``named_modules()`` names to pick
    #: the ``nn.Linear`` layers that are factorized and adapted by default
    default_targets: ClassVar[str]
    #: regular expression of the factorized layers that carry adapters by default
    #: (None: all of them). Fewer, higher layers mean fewer bytes per update and less
    #: activation memory on the device.
    default_adapter_targets: ClassVar[str | None] = None
    #: metric that results are ranked by; ``evaluate`` reports it among others
    primary_metric: ClassVar[str] = "accuracy"

    @property
    @abstractmethod
    def num_clients(self) -> int:
        """How many client partitions this task instance has."""

    @property
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serializable settings that determine the model and the data.

        Used in cache keys and manifests: two tasks with equal ``config`` and equal
        ``fingerprint`` produce the same model shapes and the same data.
        """

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the data this task uses; goes into every result."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model. Call under a seeded torch generator state."""

    @abstractmethod
    def client(self, index: int) -> Partition:
        """Client ``index`` (0-based, < ``num_clients``); partitions are disjoint."""

    @abstractmethod
    def public(self) -> Partition:
        """The server's public data, disjoint from every client's data."""

    def describe(self) -> str:
        """One line for logs and ``fedlora info``."""
        return f"{self.name} ({self.num_clients} clients, data {self.fingerprint[:12]})"


def manual_seed_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, for sampling batches reproducibly."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
