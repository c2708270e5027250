"""``fedlora deploy …``: credentials and the exact commands for a secure Deployment Engine setup.

This module only registers the subcommands; each lives in its own module, and the work in
:mod:`fedlora.deploy`.
"""

from __future__ import annotations

import typer

from fedlora.cli import deploy_app, deploy_ca, deploy_commands, deploy_node_keys

app = typer.Typer(
    help="Set up a SuperLink with TLS and SuperNode authentication, and SuperNodes on devices.",
    no_args_is_help=True,
)
app.command("ca")(deploy_ca.ca)
app.command("node-keys")(deploy_node_keys.node_keys)
app.command("commands")(deploy_commands.commands)
app.command("app")(deploy_app.app)
