"""One ``fedlora simulate`` invocation: prepare the base, run each federation, report.

The base (and the pretrained dense model for the full-model baseline) is built before
Ray starts, with progress bars, so that every run of the invocation finds it in the cache.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedlora.run_layout import InvocationLayout
from fedlora.settings import FederationSettings
from fedlora.simulations.quiet import output_to_log
from fedlora.simulations.report import comparison_rows, plot, print_devices, print_lost, print_table, write_summary
from fedlora.simulations.simulate import simulate


def prepare(settings: FederationSettings, err_console: Console) -> str:
    """Build (or find) the base; returns the task's primary metric."""
    import torch

    from fedlora.participant import task_of
    from fedlora.server.federation import base_for
    from fedlora.terminal import phase_progress

    torch.set_num_threads(1)
    task = task_of(settings)
    err_console.print(f"task {task.describe()}")
    with phase_progress() as start:
        result = base_for(settings, progress=start)
    err_console.print(f"base {result.bundle.id[:12]} ({result.bundle.size_bytes:,} bytes){' from cache' if result.cached else ''}")
    return task.primary_metric


def run_invocation(runs: list[FederationSettings], console: Console, err_console: Console) -> list[dict]:
    first = runs[0]
    layout = InvocationLayout(Path(first.out))
    metric = prepare(first, err_console)
    summaries = []
    for settings in runs:
        with output_to_log(layout.flower_log) as terminal:
            with Progress(
                TextColumn(f"{settings.name:>10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=terminal,
            ) as progress:
                bar = progress.add_task(settings.name, total=settings.rounds + 1, status="starting Ray")

                def on_record(entry: dict, bar=bar) -> None:
                    if entry["kind"] == "handshake":
                        excluded = f", {len(entry['rejected'])} excluded" if entry["rejected"] else ""
                        progress.update(bar, status=f"{entry['accepted']} clients ready{excluded}")
                        return
                    personal = (entry.get("personal") or {}).get("mean")
                    status = f"personalized {personal:.4f}" if personal is not None else ""
                    progress.update(bar, advance=1, status=f"{entry['kind']} {entry['round']}: {status}")

                summaries.append(simulate(settings, on_record))
    rows = comparison_rows(summaries)
    print_table(rows, metric, console)
    print_devices(summaries, console)
    print_lost(summaries, console)
    plot(layout, metric)
    write_summary(layout, summaries, rows)
    console.print(
        f"results in {layout.out}/ (summary {layout.summary.name}, plot {layout.plot.name}, Flower's log {layout.flower_log.name})"
    )
    return summaries
