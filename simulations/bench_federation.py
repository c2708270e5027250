"""Benchmark: bytes and quality of every method against full-model FedAvg and local-only.

Runs, with one task, one set of clients and one seed: full-model FedAvg of the dense fp32
model, local-only adapters, and each adapter method (fp32 and int8 updates for fedit, int8
for the others) — all on Flower's simulation engine, in one invocation, so wall times are
comparable.
"""

from __future__ import annotations

from rich.console import Console

from fedlora.settings import FederationSettings
from fedlora.simulations.driver import run_invocation

METHOD_RUNS = (
    ("fedit", "fp32"),
    ("fedit", "int8"),
    ("ffa", "int8"),
    ("core", "int8"),
    ("fedsa", "int8"),
    ("flexlora", "int8"),
)


def federation_runs(base: FederationSettings, methods: tuple[tuple[str, str], ...] = METHOD_RUNS) -> list[FederationSettings]:
    runs = [base.replace(method="full", wire="fp32", run_name="full-fedavg")]
    runs.append(base.replace(method="local", run_name="local-only"))
    for method, wire in methods:
        runs.append(base.replace(method=method, wire=wire, run_name=f"{method}-{wire}"))
    return runs


def run(base: FederationSettings, console: Console, err_console: Console) -> list[dict]:
    return run_invocation(federation_runs(base), console=console, err_console=err_console)
