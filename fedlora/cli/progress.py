"""Progress bars for long work, drawn on stderr so stdout stays clean for results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedlora.cli.console import err_console


@contextmanager
def phase_progress() -> Iterator[Callable[[str, int], Callable[[int, float], None]]]:
    """Yields ``start(phase, total) -> on_step(step, loss)``: one bar per phase."""
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:

        def start(phase: str, total: int) -> Callable[[int, float], None]:
            bar = progress.add_task(phase, total=total, loss=float("nan"))

            def on_step(step: int, loss: float) -> None:
                progress.update(bar, completed=step + 1, loss=loss)

            return on_step

        yield start
