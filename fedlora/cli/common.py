"""Turning CLI options into library objects, with errors that name the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedlora.errors import FedloraError
from fedlora.rank import RankRule


def task_options(corpus: Path | None) -> dict[str, Any]:
    return {} if corpus is None else {"corpus": str(corpus)}


def require_training(*also: str) -> None:
    """Check the extras a training command needs before anything imports them."""
    from fedlora.extras import require

    torch = require("torch")
    for module in also:
        require(module)
    # The models are small: one thread avoids oversubscribing a 2-core board or laptop.
    torch.set_num_threads(1)


def load_task(name: str, clients: int | None, seed: int, corpus: Path | None = None):
    require_training()
    from fedlora.tasks.registry import load_task as load

    return load(name, num_clients=clients, seed=seed, **task_options(corpus))


def rank_rule(rank: int | None, energy: float | None, param_ratio: float | None) -> RankRule:
    given = [(kind, value) for kind, value in (("fixed", rank), ("energy", energy), ("budget", param_ratio)) if value is not None]
    if len(given) > 1:
        raise FedloraError("give at most one of --rank, --energy and --param-ratio")
    kind, value = given[0] if given else ("budget", 0.5)
    return RankRule(kind, value)

