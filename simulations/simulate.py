"""Run a federation on Flower's simulation engine (Ray), in this process.

The ServerApp and ClientApp are the same ones ``flwr run .`` and a deployment use; here
they are bound to the settings directly and handed to ``flwr.simulation.run_simulation``.
Each simulated client gets one CPU, so Ray runs as many clients at once as there are
cores.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedlora.errors import FedloraError
from fedlora.run_layout import InvocationLayout
from fedlora.settings import FederationSettings


def backend_config(cpus: int) -> dict[str, Any]:
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "num_gpus": 0, "logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False},
    }


def simulate(
    settings: FederationSettings,
    on_record: Callable[[dict], None] | None = None,
    cpus: int | None = None,
    client_mods: list | None = None,
) -> dict[str, Any]:
    """Run one federation; returns its summary (also written to the run's folder)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.simulation import run_simulation

    from fedlora.client.app import make_client_app
    from fedlora.server.app import make_server_app

    layout = InvocationLayout(Path(settings.out))
    summary_path = layout.run(settings.name).summary
    summary_path.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # run_simulation's deprecation notice: `flwr run` is the CLI path
        run_simulation(
            server_app=make_server_app(settings, on_record),
            client_app=make_client_app(settings, mods=client_mods),
            num_supernodes=settings.clients,
            backend_config=backend_config(cpus or os.cpu_count() or 1),
        )
    if not summary_path.is_file():
        raise FedloraError(f"run {settings.name!r} ended without a summary; see {layout.flower_log}")
    summary = json.loads(summary_path.read_text())
    if summary["status"] == "failed":
        raise FedloraError(f"run {settings.name!r} failed: {summary.get('error', 'see its summary')} (summary: {summary_path})")
    return summary
