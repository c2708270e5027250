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
