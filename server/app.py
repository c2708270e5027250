"""The fedlora ServerApp: read the settings, run the federation.

``app`` reads its settings from Flower's run config (``flwr run .``, deployments);
``make_server_app(settings, on_record)`` binds them directly (``fedlora simulate``), with a
callback that sees every round's record as it is written (the progress bar).
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedlora.server.federation import run_federation
from fedlora.settings import FederationSettings


def make_server_app(settings: FederationSettings | None = None, on_record: Callable[[dict], None] | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        resolved = settings or FederationSettings.from_run_config(dict(context.run_config))
        run_federation(grid, resolved, on_record)

    return app


app = make_server_app()
