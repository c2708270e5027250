"""Turning CLI options into library objects, with errors that name the option."""

from __future__ import annotations

import os
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


def writable_folder(path: Path, option: str) -> Path:
    """``path`` as a folder this process can write into, created if missing — checked
    before any work starts, so that minutes of training never end on a bad path."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise FedloraError(f"{option} {path} is a file; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FedloraError(f"{option} {path} cannot be created ({error.strerror}); give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FedloraError(f"{option} {path} is not writable; give a folder you can write to")
    return path


def existing_folder(path: Path, option: str) -> Path:
    """``path``, which must be an existing folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FedloraError(f"{option} {path} is not a folder" + (" (it is a file)" if path.exists() else " (it does not exist)"))
    return path


def writable_file(path: Path, option: str) -> Path:
    """``path`` as a file this process can write: its folder is created if missing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FedloraError(f"{option} {path} is a folder; give a file name")
    writable_folder(path.parent, option)
    return path
