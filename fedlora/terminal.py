"""Where fedlora writes for people: results to stdout, progress and errors to stderr.

Rich sizes tables to the terminal; when output goes to a file or a pipe there is no
terminal, and its 80-column default would squeeze result tables, so use a wide page.
The CLI and the simulation drivers both write through here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

PAGE_WIDTH = 160

console = Console(width=None if sys.stdout.isatty() else PAGE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PAGE_WIDTH)


@contextmanager
def phase_progress() -> Iterator[Callable[[str, int], Callable[[int, float], None]]]:
    """Progress bars for long work on stderr. Yields ``start(phase, total) -> on_step(step,
    loss)``: one bar per phase."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
