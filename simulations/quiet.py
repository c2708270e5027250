"""Keep Ray's and Flower's output out of the user's terminal, in a log file instead.

Ray writes to the process's file descriptors from C++ and from worker processes, so
swapping ``sys.stdout`` is not enough: descriptors 1 and 2 are pointed at the log for
the duration, and the caller gets a console on a duplicate of the real terminal for its
progress bar and results.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console


@contextmanager
def output_to_log(log_path: Path) -> Iterator[Console]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        handler = logging.FileHandler(log_path)
        flwr_logger = logging.getLogger("flwr")
        console_handlers = [h for h in flwr_logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for h in console_handlers:
            flwr_logger.removeHandler(h)
        flwr_logger.addHandler(handler)
        try:
            yield Console(file=terminal, force_terminal=terminal.isatty())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            flwr_logger.removeHandler(handler)
            for h in console_handlers:
                flwr_logger.addHandler(h)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            terminal.close()
