"""``fedlora bench …``: the benchmarks whose figures go into the README."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedlora.cache import cache_root
from fedlora.cli import options
from fedlora.cli.settings_options import settings_options
from fedlora.settings import FederationSettings
from fedlora.cli.common import load_task

app = typer.Typer(help="Benchmarks whose figures go into the README.", no_args_is_help=True)


@app.command("compress")
def bench_compress(
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    ratios: Annotated[str, typer.Option("--ratios", help="Comma-separated parameter ratios of the factorized layers.")] = "0.5,0.25",
    heal_steps: options.HealSteps = 300,
    pretrain_steps: options.PretrainSteps = 1500,
    seed: options.Seed = 0,
    cache_dir: options.CacheDir = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the results as JSON here.")] = None,
) -> None:
    """Dense fp32 against factorized INT8 at several parameter ratios, with and without healing."""
    from fedlora.cli.common import require_training

    require_training("safetensors")
    from fedlora.terminal import phase_progress
    from fedlora.errors import FedloraError
    from fedlora.simulations.bench_compress import print_results, run

    try:
        parsed = [float(r) for r in ratios.split(",") if r.strip()]
    except ValueError as exc:
        raise FedloraError(f"--ratios must be numbers separated by commas, got {ratios!r}") from exc
    the_task = load_task(task, None, seed, corpus)
    with phase_progress() as start:
        rows = run(the_task, parsed, heal_steps, pretrain_steps, seed, cache_root(cache_dir), progress=start, out=out)
    print_results(rows, the_task)


@app.command("federation")
@settings_options(
    include=("task", "corpus", "clients", "rounds", "fraction", "seed", "out", "cache_dir"), defaults={"out": "runs/bench-federation"}
)
def bench_federation(settings: FederationSettings) -> None:
    """Every method against full-model FedAvg and local-only training: bytes, metric, time."""
    from fedlora.cli.common import require_training
    from fedlora.terminal import console, err_console

    require_training("flwr", "ray", "matplotlib", "safetensors")
    from fedlora.simulations.bench_federation import run as run_federation_bench

    run_federation_bench(settings, console, err_console)


@app.command("memory")
def bench_memory(
    profiles: Annotated[Optional[str], typer.Option("--profiles", help="Comma-separated device profiles (default: every built-in profile).")] = None,
    windows: Annotated[str, typer.Option("--windows", help="Shorter training windows to try where the task's own does not fit (comma-separated; '' = none).")] = "48,32",
    pretrain_steps: options.PretrainSteps = 1500,
    heal_steps: options.HealSteps = 300,
    seed: options.Seed = 0,
    cache_dir: options.CacheDir = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the results as JSON here.")] = None,
) -> None:
    """Per device profile: the planned local training, predicted vs measured peak memory, update size vs LoRaWAN."""
    from fedlora.cli.common import require_training
    from fedlora.errors import FedloraError

    require_training("flwr", "safetensors")
    from fedlora.settings import FederationSettings
    from fedlora.simulations.bench_memory import print_results, run

    try:
        parsed = [int(w) for w in windows.split(",") if w.strip()]
    except ValueError as exc:
        raise FedloraError(f"--windows must be whole numbers separated by commas, got {windows!r}") from exc
    settings = FederationSettings(pretrain_steps=pretrain_steps, heal_steps=heal_steps, seed=seed, cache_dir=str(cache_dir or ""))
    names = [p.strip() for p in profiles.split(",") if p.strip()] if profiles else None
    print_results(run(settings, names, parsed, out))


@app.command("runtime")
def bench_runtime(
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timed calls per method and configuration (the median is reported).")] = 200,
    seed: options.Seed = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the results as JSON here.")] = None,
) -> None:
    """The int8 runtime on factorized 256² and 1024² layers against dense float32 and the TFLM interpreter: speed, bytes, mismatches."""
    from fedlora.terminal import console
    from fedlora.simulations.bench_runtime import report, run

    console.print(report(run(rounds, seed, out)), markup=False, highlight=False)
