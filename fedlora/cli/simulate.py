"""``fedlora simulate``: federate adapters on Flower's simulation engine and measure the bytes."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from fedlora.cli.settings_options import settings_options
from fedlora.errors import FedloraError
from fedlora.settings import FederationSettings
from fedlora.terminal import console, err_console


#: exit status of an invocation with a degraded run (2 is an error)
DEGRADED_EXIT = 3


def _check_no_shadowing_package() -> None:
    """Ray starts the simulated clients with the current folder first on their path: a
    ``fedlora/`` folder here that is not the installed fedlora would be imported instead."""
    import fedlora

    here = Path.cwd() / "fedlora"
    if here.is_dir() and here.resolve() != Path(fedlora.__file__).resolve().parent:
        raise FedloraError(
            f"this folder holds a fedlora/ folder ({here}) that is not the installed fedlora, and the simulated clients "
            "would import it instead; run fedlora simulate from another folder"
        )


def _start_afresh(out: Path, overwrite: bool) -> None:
    """No file of an earlier invocation may leak into this one: its clients would resume the
    earlier residuals and personal adapters, and the same seed would give another result."""
    from fedlora.run_layout import InvocationLayout

    layout = InvocationLayout(out)
    earlier = layout.earlier()
    if not earlier:
        return
    if not overwrite and out.resolve() != Path(FederationSettings.out).resolve():
        shown = ", ".join(path.name for path in earlier[:4]) + (" …" if len(earlier) > 4 else "")
        raise FedloraError(f"--out {out} holds the results of an earlier invocation ({shown}); give another --out, or --overwrite to replace them")
    layout.clear()
    err_console.print(f"replaced the results of an earlier invocation in {out}")


class Baseline(str, Enum):
    none = "none"
    full = "full"
    local = "local"


@settings_options(exclude=("run_name",))
def simulate(
    settings: FederationSettings,
    baseline: Annotated[Baseline, typer.Option("--baseline", help="Also run, with the same clients and seed: full-model FedAvg (full) or local-only adapters (local).")] = Baseline.none,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the results of an earlier invocation in --out (the default runs/latest is always replaced).")] = False,
) -> None:
    """Federate adapters over the frozen INT8 base on Flower's simulation engine (Ray).

    Exits 0 when every run completed with all its clients, 3 when a run went on without
    clients it lost (allowed by --min-clients below 1; the summary lists them), 2 on errors.
    """
    from fedlora.cli.common import require_training
    from fedlora.paths import writable_folder

    _check_no_shadowing_package()
    writable_folder(Path(settings.out), "--out")
    _start_afresh(Path(settings.out), overwrite)
    if settings.cache_dir:
        writable_folder(Path(settings.cache_dir), "--cache-dir")
    require_training("flwr", "ray", "matplotlib", "safetensors")
    if settings.fleet:
        from fedlora.client.fleet import parse_fleet

        parse_fleet(settings.fleet)  # before anything starts: every profile must exist
    runs = [settings]
    if baseline is not Baseline.none:
        full = baseline is Baseline.full  # dense FedAvg: every weight, no adapters, no device plans
        runs.append(
            settings.replace(method=baseline.value, run_name=baseline.value, personal=False, wire="fp32" if full else settings.wire, fleet="" if full else settings.fleet)
        )
    from fedlora.simulations.driver import run_invocation

    summaries = run_invocation(runs, console=console, err_console=err_console)
    if any(summary["status"] != "completed" for summary in summaries):
        raise typer.Exit(DEGRADED_EXIT)
