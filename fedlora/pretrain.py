"""Pretrain the dense model on the server's public data, once per configuration.

The result is cached as safetensors under ``<cache>/pretrained/<key>.safetensors``; the
key hashes the task's model, the public data itself, the training config and the seed.
The file's own SHA-256 is pinned next to it (``<key>.sha256``): a cached model that is
truncated, altered or unreadable is not loaded but pretrained again (pretraining is
deterministic), with a warning that says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn

from fedlora.cache import config_hash
from fedlora.tasks.base import Task
from fedlora.tasks.datasets import dataset_digest
from fedlora.train import TrainConfig, train


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, optimizer="adam")


def fresh_model(task: Task, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return task.build_model()


def pretrain_key(task: Task, config: PretrainConfig, seed: int) -> str:
    public = task.public()
    return config_hash(
        {
            "task": task.name,
            "model": repr(fresh_model(task, seed)),
            "public": [dataset_digest(public.train), dataset_digest(public.test)],
            "train": asdict(config),
            "seed": seed,
        }
    )


def pretrained_model(
    task: Task,
    config: PretrainConfig,
    seed: int,
    cache: Path,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[nn.Module, bool]:
    """The pretrained dense model and whether it came from the cache."""
    path = cache / "pretrained" / f"{task.name}-{pretrain_key(task, config, seed)}.safetensors"
    pin = path.with_suffix(".sha256")
    model = fresh_model(task, seed)
    if path.is_file():
        problem = _load_pinned(model, path, pin)
        if problem is None:
            return model.eval(), True
        logging.getLogger("fedlora").warning("the cached pretrained model %s is %s: pretraining it again", path, problem)
        model = fresh_model(task, seed)
    train(model, task.public().train, config.train_config(), seed=seed, on_step=on_step)
    data = save({k: v.contiguous() for k, v in model.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, content in ((pin, hashlib.sha256(data).hexdigest().encode()), (path, data)):  # the pin first: a file never lacks it
        staging = target.with_suffix(target.suffix + ".partial")
        staging.write_bytes(content)
        staging.replace(target)
    return model.eval(), False


def _load_pinned(model: nn.Module, path: Path, pin: Path) -> str | None:
    """Load ``path`` into ``model`` if its SHA-256 is the pinned one; else what is wrong."""
    data = path.read_bytes()
    if not pin.is_file() or pin.read_text().strip() != hashlib.sha256(data).hexdigest():
        return "not the file that was saved (its SHA-256 differs from the pinned one)"
    try:
        model.load_state_dict(load(data))
    except Exception as error:  # noqa: BLE001 — a pinned file that does not load is still damaged
        return f"unreadable ({type(error).__name__}: {error})"
    return None
