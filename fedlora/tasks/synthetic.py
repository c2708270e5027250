"""``synthetic``: the Synthetic(α, β) benchmark of FedProx (Li et al., MLSys 2020).

Every client k has its own softmax-regression "truth" and its own input distribution:

    u_k ~ N(0, α²)          W_k (10×60), b_k (10) ~ N(u_k, 1)      # how the labels differ
    B_k ~ N(0, β²)          v_k (60) ~ N(B_k, 1)                   # how the inputs differ
    x ~ N(v_k, Σ),  Σ = diag(j^-1.2) for j = 1..60
    y = argmax softmax(W_k x + b_k)

α and β are the standard deviations passed to ``numpy.random.normal`` in the paper's
generator (``generate_niid.py``), which the paper writes as N(0, α), N(0, β). A client
holds ``int(lognormal(4, 2)) + 50`` examples, as in that generator (heavy-tailed, at least
50), of which the last ``test_fraction`` are its test set.

Clients are generated lazily, each from ``np.random.default_rng([seed, k])`` on its own, so
a federation of 10,000 clients costs nothing until a client is asked for. The server's
public data comes from ``public_clients`` extra clients drawn from a separate stream
(a SeedSequence spawn key), so it never coincides with any client of any federation size.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fedlora.tasks.base import Partition, Task
from fedlora.tasks.datasets import LabelledDataset
from fedlora.tasks.mlp import HIDDEN_LAYERS, MLP
from fedlora.tasks.validation import as_config, check, check_client_index, parse_options

NUM_FEATURES = 60
NUM_CLASSES = 10
MIN_EXAMPLES = 50
#: spawn key of the public "extra clients"; federation clients use none
_PUBLIC_STREAM = (1,)
#: names the generator below; bump it whenever the generated data changes
_GENERATOR = "fedprox-synthetic/1"
# per-feature variance j^-1.2 (j counted from 1): later features are less spread
_FEATURE_STD = np.arange(1, NUM_FEATURES + 1, dtype=np.float64) ** (-1.2 / 2)


@dataclass(frozen=True)
class SyntheticOptions:
    """Options of ``synthetic``; every one appears in the task's ``config``."""

    #: spread of the clients' labelling functions (model heterogeneity)
    alpha: float = 1.0
    #: spread of the clients' input means (data heterogeneity)
    beta: float = 1.0
    #: the last ``test_fraction`` of each client's examples are its test set
    test_fraction: float = 0.2
    #: how many extra clients' data make up the server's public data
    public_clients: int = 20
    #: widths of the model's hidden layers
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        check(self.alpha >= 0, f"synthetic option alpha={self.alpha} must be non-negative (the paper uses 0, 0.5, 1)")
        check(self.beta >= 0, f"synthetic option beta={self.beta} must be non-negative (the paper uses 0, 0.5, 1)")
        check(0 < self.test_fraction < 1, f"synthetic option test_fraction={self.test_fraction} must be in (0, 1)")
        check(self.public_clients >= 1, f"synthetic option public_clients={self.public_clients} must be at least 1")
        check(
            len(self.hidden) >= 1 and all(width >= 1 for width in self.hidden),
            f"synthetic option hidden={self.hidden} must list at least one positive width, e.g. hidden=64,64",
        )


class SyntheticTask(Task):
    """FedProx's Synthetic(α, β): per-client softmax regression, for federations of any size."""

    name: ClassVar[str] = "synthetic"
    default_targets: ClassVar[str] = HIDDEN_LAYERS
    #: FedProx's experiments use 30 devices
    default_num_clients: ClassVar[int] = 30

    def __init__(self, num_clients: int | None = None, seed: int = 0, **options: Any):
        self.options = parse_options(SyntheticOptions, options, task=self.name)
        self.seed = seed
        self._num_clients = self.default_num_clients if num_clients is None else num_clients
        check(self._num_clients >= 1, f"synthetic needs at least 1 client, got num_clients={num_clients}")

    @property
    def num_clients(self) -> int:
        return self._num_clients

    @property
    def config(self) -> dict[str, Any]:
        return {"task": self.name, "num_clients": self.num_clients, "seed": self.seed, **as_config(self.options)}

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the generator's recipe and of the public data it yields.

        The data is a pure function of the recipe; hashing the public examples as well
        catches a numpy whose random streams differ from the one that made earlier results.
        """
        o = self.options
        recipe = {
            "generator": _GENERATOR, "seed": self.seed, "num_clients": self.num_clients, "alpha": o.alpha,
            "beta": o.beta, "test_fraction": o.test_fraction, "public_clients": o.public_clients,
        }  # fmt: skip
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
        for inputs, targets in self._public_examples():
            digest.update(inputs.tobytes())
            digest.update(targets.tobytes())
        return digest.hexdigest()

    def build_model(self) -> nn.Module:
        return MLP(NUM_FEATURES, self.options.hidden, NUM_CLASSES)

    def client(self, index: int) -> Partition:
        check_client_index(index, self.num_clients, task=self.name)
        rng = np.random.default_rng([self.seed, index])
        return self._partition(f"synthetic:{index}", [generate_client(rng, self.options.alpha, self.options.beta)])

    def public(self) -> Partition:
        return self._partition("synthetic:public", self._public_examples())

    def _public_examples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        o = self.options
        streams = (np.random.SeedSequence([self.seed, j], spawn_key=_PUBLIC_STREAM) for j in range(o.public_clients))
        return [generate_client(np.random.default_rng(stream), o.alpha, o.beta) for stream in streams]

    def _partition(self, name: str, clients: list[tuple[np.ndarray, np.ndarray]]) -> Partition:
        """Train on the head and test on the tail of every client's examples, pooled."""
        heads, tails = [], []
        for inputs, targets in clients:
            num_test = max(1, int(len(targets) * self.options.test_fraction))
            heads.append((inputs[:-num_test], targets[:-num_test]))
            tails.append((inputs[-num_test:], targets[-num_test:]))
        return Partition(name, _labelled(heads), _labelled(tails))


def generate_client(rng: np.random.Generator, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """One Synthetic(α, β) client: ``(x (n, 60) float32, y (n,) int64)`` drawn from ``rng``."""
    u = rng.normal(0.0, alpha)
    weights = rng.normal(u, 1.0, (NUM_CLASSES, NUM_FEATURES))
    bias = rng.normal(u, 1.0, NUM_CLASSES)
    b = rng.normal(0.0, beta)
    mean = rng.normal(b, 1.0, NUM_FEATURES)
    n = int(rng.lognormal(4.0, 2.0)) + MIN_EXAMPLES
    x = mean + rng.standard_normal((n, NUM_FEATURES)) * _FEATURE_STD  # (n, 60)
    y = np.argmax(x @ weights.T + bias, axis=1)  # softmax keeps the argmax of the logits
    return x.astype(np.float32), y.astype(np.int64)


def _labelled(parts: list[tuple[np.ndarray, np.ndarray]]) -> LabelledDataset:
    inputs = np.concatenate([x for x, _ in parts])
    targets = np.concatenate([y for _, y in parts])
    return LabelledDataset(torch.from_numpy(inputs), torch.from_numpy(targets))
