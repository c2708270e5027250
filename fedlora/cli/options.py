"""Options shared by several commands, declared once so their help reads the same everywhere.

Where an option is also a federation setting, its help is the setting's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedlora.settings import FederationSettings

_help = FederationSettings.field_help

Seed = Annotated[int, typer.Option("--seed", help=_help("seed"))]
TaskName = Annotated[
    str,
    typer.Option("--task", help=_help("task")),
]
Corpus = Annotated[
    Optional[Path],
    typer.Option("--corpus", help=_help("corpus")),
]
CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help=_help("cache_dir")),
]
Clients = Annotated[Optional[int], typer.Option("--clients", min=1, help="Number of clients (default: the task's default).")]
PretrainSteps = Annotated[int, typer.Option("--pretrain-steps", min=0, help=_help("pretrain_steps"))]
Rank = Annotated[Optional[int], typer.Option("--rank", min=1, help="Keep this many singular values in every layer.")]
Energy = Annotated[
    Optional[float], typer.Option("--energy", help="Keep the fewest singular values that carry this fraction of each layer's energy, e.g. 0.9.")
]
ParamRatio = Annotated[
    Optional[float],
    typer.Option("--param-ratio", help="Keep the largest rank whose factors hold at most this fraction of the dense parameters (default: 0.5)."),
]
Targets = Annotated[Optional[str], typer.Option("--targets", help="Regular expression of the nn.Linear layers to factorize (default: the task's).")]
HealSteps = Annotated[int, typer.Option("--heal-steps", min=0, help=_help("heal_steps"))]
