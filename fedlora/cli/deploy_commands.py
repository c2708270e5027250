"""``fedlora deploy commands``: print every line to run, on the server and on each device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def commands(
    tls: Annotated[Path, typer.Option("--tls", help="The folder `fedlora deploy ca` wrote.")],
    keys: Annotated[Path, typer.Option("--keys", help="The folder `fedlora deploy node-keys` wrote.")],
    superlink: Annotated[
        Optional[str],
        typer.Option("--superlink", help="host:port the devices dial (default: the certificate's first address, on Flower's default port 8000)."),
    ] = None,
    bind: Annotated[
        Optional[str], typer.Option("--bind", help="Address the SuperLink listens on (default: 0.0.0.0, or loopback if the devices dial loopback).")
    ] = None,
    database: Annotated[Optional[Path], typer.Option("--database", help="The SuperLink's state file (default: FLWR_HOME/superlink.db).")] = None,
    flwr_home: Annotated[
        Optional[Path], typer.Option("--flwr-home", help="FLWR_HOME of the flwr CLI on the server (default: $FLWR_HOME, else ~/.flwr).", envvar="FLWR_HOME")
    ] = None,
    connection: Annotated[str, typer.Option("--connection", help="Name of the SuperLink connection in config.toml.")] = "fedlora",
    device_dir: Annotated[str, typer.Option("--device-dir", help="Folder on each device for its key, certificate, state and cache.")] = "/opt/fedlora",
    device_venv: Annotated[
        Optional[str], typer.Option("--device-venv", help="The venv with fedlora[client] on each device (default: DEVICE_DIR/venv).")
    ] = None,
    device_user: Annotated[str, typer.Option("--device-user", help="The user the SuperNode runs as on each device.")] = "fedlora",
    first_runtime_port: Annotated[
        Optional[int],
        typer.Option(
            "--first-runtime-port",
            help="Node i serves its ClientApp's Runtime API on this port + i, so nodes can share a host (default: Flower's 9094).",
        ),
    ] = None,
    node: Annotated[Optional[list[str]], typer.Option("--node", help="Print the device lines of this node only; repeat for several.")] = None,
    profile: Annotated[
        Optional[str],
        typer.Option("--profile", help="The device profile of every node (e.g. rpi-zero-2w-headless): each trains what fits its memory."),
    ] = None,
) -> None:
    """Print the SuperLink, flwr and SuperNode command lines, the config.toml entry and a systemd unit per node."""
    from fedlora.client.profiles import builtin_profiles
    from fedlora.deploy.certificates import TlsFiles
    from fedlora.errors import FedloraError
    from fedlora.deploy.commands import render
    from fedlora.deploy.node_keys import read_node_keys
    from fedlora.deploy.plan import plan_deployment

    if profile is not None and profile not in builtin_profiles():  # a device reads only what fedlora installs
        raise FedloraError(f"--profile {profile!r} is not a built-in device profile; choose one of {', '.join(builtin_profiles())}")
    deployment = plan_deployment(
        TlsFiles.existing(tls),
        read_node_keys(keys),
        superlink=superlink,
        bind=bind,
        database=database,
        flwr_home=flwr_home,
        connection=connection,
        device_dir=device_dir,
        device_venv=device_venv,
        device_user=device_user,
        first_runtime_port=first_runtime_port,
        only=node,
        profile=profile,
    )
    typer.echo(render(deployment), nl=False)
