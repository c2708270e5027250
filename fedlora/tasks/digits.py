"""``digits``: 8×8 handwritten digits (scikit-learn's bundled copy), skewed and rotated per client.

The 1,797 images ship inside scikit-learn (``load_digits`` reads a bundled file; nothing
is downloaded). A stratified 20% is set aside, untransformed, as the server's public data;
which images are public depends on nothing but the dataset, so a base pretrained on them
stays valid across seeds. The rest is split among clients by Dirichlet label skew, and
every client sees its images through its own lens — a rotation by a client-specific angle
and a brightness/contrast change — so a client's inputs *and* labels differ from the
public data and from each other, and personalization has something to learn. Each client
keeps a random 20% of its examples as its test set.

Pixels are scaled to [0, 1]; an example is the flattened 64-vector.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fedlora.extras import require
from fedlora.tasks.base import Partition, Task
from fedlora.tasks.datasets import LabelledDataset
from fedlora.tasks.label_skew import dirichlet_label_skew
from fedlora.tasks.mlp import HIDDEN_LAYERS, MLP
from fedlora.tasks.rotation import rotate_bilinear
from fedlora.tasks.validation import as_config, check, check_client_index, parse_options

IMAGE_SIDE = 8
NUM_CLASSES = 10
PUBLIC_FRACTION = 0.2
TEST_FRACTION = 0.2
#: every client keeps at least this many examples (so its test set has at least two)
MIN_CLIENT_EXAMPLES = 10
#: seeds the public/client split of the dataset itself; fixed, so the public set never moves
_PUBLIC_SPLIT_SEED = 20240229


@dataclass(frozen=True)
class DigitsOptions:
    """Options of ``digits``; every one appears in the task's ``config``."""

    #: Dirichlet concentration of the label skew: small = few classes per client
    alpha: float = 0.5
    #: each client's images are rotated by an angle drawn uniformly from ±max_rotation degrees
    max_rotation: float = 45.0
    #: each client adds a brightness offset drawn uniformly from ±max_brightness (pixels in [0, 1])
    max_brightness: float = 0.2
    #: each client scales contrast by a factor drawn uniformly from 1 ± max_contrast
    max_contrast: float = 0.3
    #: widths of the model's hidden layers
    hidden: tuple[int, ...] = (128, 64)

    def __post_init__(self) -> None:
        check(self.alpha > 0, f"digits option alpha={self.alpha} must be positive (e.g. 0.1 to 100)")
        check(
            0 <= self.max_rotation <= 180,
            f"digits option max_rotation={self.max_rotation} must be in [0, 180] degrees",
        )
        check(0 <= self.max_brightness <= 1, f"digits option max_brightness={self.max_brightness} must be in [0, 1]")
        check(0 <= self.max_contrast < 1, f"digits option max_contrast={self.max_contrast} must be in [0, 1)")
        check(
            len(self.hidden) >= 1 and all(width >= 1 for width in self.hidden),
            f"digits option hidden={self.hidden} must list at least one positive width, e.g. hidden=128,64",
        )


@dataclass(frozen=True)
class ClientLens:
    """How one client sees images: ``clip(contrast · rotate(x, degrees) + brightness, 0, 1)``."""

    degrees: float
    brightness: float
    contrast: float

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``images`` (N, 8, 8) in [0, 1] → transformed (N, 8, 8) in [0, 1]."""
        rotated = rotate_bilinear(images, self.degrees)
        return np.clip(self.contrast * rotated + self.brightness, 0.0, 1.0)


class DigitsTask(Task):
    """Handwritten-digit classification with label skew and a per-client rotation."""

    name: ClassVar[str] = "digits"
    default_targets: ClassVar[str] = HIDDEN_LAYERS
    default_num_clients: ClassVar[int] = 20

    def __init__(self, num_clients: int | None = None, seed: int = 0, **options: Any):
        self.options = parse_options(DigitsOptions, options, task=self.name)
        self.seed = seed
        _, labels = _load_digits()
        public, pool = _public_split(labels)
        n = self.default_num_clients if num_clients is None else num_clients
        most = len(pool) // MIN_CLIENT_EXAMPLES
        check(
            1 <= n <= most,
            f"digits cannot make {n} clients: its {len(pool)} client images allow 1 to {most} "
            f"clients of at least {MIN_CLIENT_EXAMPLES} images; use fewer clients, or the synthetic "
            "task for large federations",
        )
        rng = np.random.default_rng(seed)
        parts = dirichlet_label_skew(labels[pool], n, self.options.alpha, rng, MIN_CLIENT_EXAMPLES)
        self._client_indices = [_read_only(pool[part]) for part in parts]
        self._public_indices = _read_only(public)
        self._fingerprint = _dataset_digest()

    @property
    def num_clients(self) -> int:
        return len(self._client_indices)

    @property
    def config(self) -> dict[str, Any]:
        return {"task": self.name, "num_clients": self.num_clients, "seed": self.seed, **as_config(self.options)}

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def lens(self, index: int) -> ClientLens:
        """The input transform of client ``index``."""
        check_client_index(index, self.num_clients, task=self.name)
        return self._draw_lens(self._client_rng(index))

    def client_indices(self, index: int) -> np.ndarray:
        """Indices into ``load_digits()`` of client ``index``'s examples (sorted)."""
        check_client_index(index, self.num_clients, task=self.name)
        return self._client_indices[index]

    def public_indices(self) -> np.ndarray:
        """Indices into ``load_digits()`` of the public examples (sorted)."""
        return self._public_indices

    def build_model(self) -> nn.Module:
        return MLP(IMAGE_SIDE * IMAGE_SIDE, self.options.hidden, NUM_CLASSES)

    def client(self, index: int) -> Partition:
        check_client_index(index, self.num_clients, task=self.name)
        images, labels = _load_digits()
        indices = self._client_indices[index]
        rng = self._client_rng(index)
        seen = self._draw_lens(rng).apply(images[indices])
        return _partition(f"digits:{index}", seen, labels[indices], rng)

    def public(self) -> Partition:
        images, labels = _load_digits()
        rng = np.random.default_rng(_PUBLIC_SPLIT_SEED)
        return _partition("digits:public", images[self._public_indices], labels[self._public_indices], rng)

    def _client_rng(self, index: int) -> np.random.Generator:
        """Client ``index``'s own stream (its lens, then its test split).

        The ``index``-th child of ``SeedSequence(seed)``: independent of the parent stream
        that splits the labels, so a client's lens depends on nothing but seed and index.
        """
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index,)))

    def _draw_lens(self, rng: np.random.Generator) -> ClientLens:
        o = self.options
        return ClientLens(
            degrees=float(rng.uniform(-o.max_rotation, o.max_rotation)),
            brightness=float(rng.uniform(-o.max_brightness, o.max_brightness)),
            contrast=float(rng.uniform(1 - o.max_contrast, 1 + o.max_contrast)),
        )


def _partition(name: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Partition:
    """A random ``TEST_FRACTION`` of the examples (at least one) as test, the rest as train."""
    order = rng.permutation(len(labels))
    num_test = max(1, round(len(labels) * TEST_FRACTION))
    test, train = order[:num_test], order[num_test:]
    inputs = torch.from_numpy(images.reshape(len(labels), -1).astype(np.float32))
    targets = torch.from_numpy(labels)
    return Partition(
        name, LabelledDataset(inputs[train], targets[train]), LabelledDataset(inputs[test], targets[test])
    )


def _public_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(public, pool)`` sorted index arrays: a stratified ``PUBLIC_FRACTION`` of every class."""
    rng = np.random.default_rng(_PUBLIC_SPLIT_SEED)
    public = []
    for label in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == label))
        public.append(members[: round(len(members) * PUBLIC_FRACTION)])
    public = np.sort(np.concatenate(public))
    pool = np.setdiff1d(np.arange(len(labels)), public)
    return public, pool


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 8, 8) float64 in [0, 1], labels (N,) int64)``, read once per process."""
    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    images = bunch.images / 16.0  # the bundled pixels are counts 0..16
    labels = bunch.target.astype(np.int64)
    # shared by every task instance in the process: nobody may edit them
    return _read_only(images), _read_only(labels)


@functools.lru_cache(maxsize=1)
def _dataset_digest() -> str:
    images, labels = _load_digits()
    digest = hashlib.sha256(b"sklearn-digits\0")
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()
