"""The ``fedlora`` command. This module only registers commands; each lives in its own module.

Errors a user can act on (:class:`FedloraError`) are printed here, in one place, without
a traceback, and the process exits with status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from fedlora import __version__
from fedlora.cli import bench, compress, deploy, export, info, keys, plan, pretrain, run, simulate
from fedlora.errors import FedloraError
from fedlora.terminal import err_console

app = typer.Typer(
    name="fedlora",
    help="Federated on-device personalization with low-rank adapters over a frozen INT8 base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedlora {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Federated on-device personalization with low-rank adapters over a frozen INT8 base."""


app.command("pretrain")(pretrain.pretrain)
app.command("compress")(compress.compress)
app.command("simulate")(simulate.simulate)
app.command("export")(export.export)
app.command("run")(run.run)
app.command("info")(info.info)
app.command("plan")(plan.plan)
app.add_typer(bench.app, name="bench")
app.add_typer(deploy.app, name="deploy")
app.add_typer(keys.app, name="keys")


def main() -> None:
    try:
        app()
    except FedloraError as error:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
