"""Options shared by several commands, declared once so their help reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Seed = Annotated[int, typer.Option("--seed", help="Seed for every random choice; the same seed gives the same result.")]
TaskName = Annotated[
    str,
    typer.Option("--task", help="Built-in task (textlm, digits, synthetic) or a dotted path 'package.module:TaskClass'."),
]
Corpus = Annotated[
    Optional[Path],
    typer.Option(
        "--corpus",
        help="textlm only: a folder of your own text files (one client per file or subfolder) instead of the Python standard library.",
    ),
]
CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache for pretrained models and base bundles (default: $FEDLORA_CACHE or ~/.cache/fedlora)."),
]
Clients = Annotated[Optional[int], typer.Option("--clients", min=1, help="Number of clients (default: the task's default).")]
PretrainSteps = Annotated[int, typer.Option("--pretrain-steps", min=0, help="Optimizer steps of dense pretraining on public data.")]
Rank = Annotated[Optional[int], typer.Option("--rank", min=1, help="Keep this many singular values in every layer.")]
Energy = Annotated[
    Optional[float], typer.Option("--energy", help="Keep the fewest singular values that carry this fraction of each layer's energy, e.g. 0.9.")
]
ParamRatio = Annotated[
    Optional[float],
    typer.Option("--param-ratio", help="Keep the largest rank whose factors hold at most this fraction of the dense parameters (default: 0.5)."),
]
Targets = Annotated[Optional[str], typer.Option("--targets", help="Regular expression of the nn.Linear layers to factorize (default: the task's).")]
HealSteps = Annotated[int, typer.Option("--heal-steps", min=0, help="Distillation steps that heal the factorized model (0: no healing).")]
