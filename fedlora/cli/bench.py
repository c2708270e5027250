"""``fedlora bench …``: the benchmarks whose figures go into the README."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedlora.cache import cache_root
from fedlora.cli import options
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
    from fedlora.cli.progress import phase_progress
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
def bench_federation(
    clients: Annotated[int, typer.Option("--clients", min=1, help="Simulated clients.")] = 100,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Federated rounds.")] = 8,
    fraction: Annotated[float, typer.Option("--fraction", help="Fraction of clients per round.")] = 0.1,
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    seed: options.Seed = 0,
    out: Annotated[Path, typer.Option("--out", help="Folder for every run's results.")] = Path("runs/bench-federation"),
    cache_dir: options.CacheDir = None,
) -> None:
    """Every method against full-model FedAvg and local-only training: bytes, metric, time."""
    from fedlora.cli.console import console, err_console
    from fedlora.cli.common import require_training

    require_training("flwr", "ray", "matplotlib", "safetensors")
    from fedlora.settings import FederationSettings
    from fedlora.simulations.bench_federation import run as run_federation_bench

    base = FederationSettings(
        task=task, corpus=str(corpus or ""), clients=clients, rounds=rounds, fraction=fraction,
        seed=seed, out=str(out), cache_dir=str(cache_dir or ""),
    )  # fmt: skip
    run_federation_bench(base, console, err_console)
