"""``fedlora deploy app``: the Flower app folder for ``flwr run``, for the installed fedlora."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def app(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the app's pyproject.toml into (created).")],
    config: Annotated[
        Optional[list[str]],
        typer.Option("--config", "-c", help="A run-config default KEY=VALUE (the settings' names with dashes, e.g. clients=3); repeatable."),
    ] = None,
) -> None:
    """Write a Flower app folder that runs the installed fedlora (submit it with `flwr run FOLDER`).

    The folder holds only a pyproject.toml: a source checkout as the app folder would hide
    the installed package on every node behind its own fedlora/ folder.
    """
    from flwr.common.config import parse_config_args

    from fedlora.errors import FedloraError
    from fedlora.flower_app import write_flower_app

    malformed = [item for item in config or [] if "=" not in item]
    if malformed:
        raise FedloraError(f"--config takes KEY=VALUE, got {', '.join(map(repr, malformed))}")
    try:
        overrides = parse_config_args(config or [])
    except Exception as exc:  # Flower raises its own parse errors
        raise FedloraError(f"--config takes KEY=VALUE with a TOML value (strings quoted: task='digits'): {exc}") from exc
    folder = write_flower_app(out, overrides)
    typer.echo(f"wrote {folder / 'pyproject.toml'}; run it with: flwr run {folder} <connection> --stream")
