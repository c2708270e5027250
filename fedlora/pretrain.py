"""Pretrain the dense model on the server's public data, once per configuration.

The result is cached as safetensors under ``<cache>/pretrained/<key>.safetensors``; the
key hashes the task's model, the public data itself, the training config and the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
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
    model = fresh_model(task, seed)
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model.eval(), True
    train(model, task.public().train, config.train_config(), seed=seed, on_step=on_step)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, staging)
    staging.replace(path)
    return model.eval(), False
