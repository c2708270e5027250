"""The model a participant trains: the frozen base plus its adapters.

Server and clients build it the same way, so both agree on every adapter tensor's name
and shape — and on the frozen ones (lora-fa's A, core's A and B), which the server needs
to measure how exact an aggregation was. Loading a task and a base is the slow part;
both are cached per process, since one simulation process serves many clients.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from torch import nn

from fedlora.adapters import GLOBAL, PERSONAL, AdapterConfig, attach_adapters
from fedlora.bundle import BaseBundle, load_base_model, read_base_bundle
from fedlora.methods import get_method
from fedlora.settings import FederationSettings
from fedlora.tasks.base import Task
from fedlora.tasks.registry import load_task


@lru_cache(maxsize=4)
def _task(name: str, clients: int, seed: int, corpus: str) -> Task:
    options = {"corpus": corpus} if corpus else {}
    return load_task(name, num_clients=clients, seed=seed, **options)


def task_of(settings: FederationSettings) -> Task:
    return _task(settings.task, settings.clients, settings.seed, settings.corpus)


@lru_cache(maxsize=4)
def _frozen_base(path: str, bundle_id: str, task: Task) -> nn.Module:
    return load_base_model(read_base_bundle(path, expected_id=bundle_id), task)


def base_model(bundle: BaseBundle, task: Task) -> nn.Module:
    """A private copy of the frozen base (the cached original is never handed out)."""
    return copy.deepcopy(_frozen_base(str(bundle.path), bundle.id, task))


def adapter_config(settings: FederationSettings, task: Task, rank: int | None = None, targets: str | None = None) -> AdapterConfig:
    """The global adapter: the method's variant; targets from the caller (a device plan),
    else ``--targets``, else the task's default."""
    method = get_method(settings.method)
    return AdapterConfig(
        variant=method.variant or "lora",
        rank=rank or settings.rank,
        alpha=settings.alpha,
        targets=targets or settings.targets or task.default_adapter_targets,
        seed=settings.seed,
    )


def adapted_model(
    settings: FederationSettings, bundle: BaseBundle, task: Task, rank: int | None = None, targets: str | None = None
) -> nn.Module:
    """Base + global adapter (+ a personal one with ``--personal``); only adapters train."""
    model = base_model(bundle, task)
    config = adapter_config(settings, task, rank, targets)
    attach_adapters(model, config, GLOBAL)
    if settings.personal:
        personal = config.personal()
        attach_adapters(model, personal, PERSONAL)
    return model

