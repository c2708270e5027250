"""Where the CLI writes: results to stdout, progress and errors to stderr.

Rich sizes tables to the terminal; when output goes to a file or a pipe there is no
terminal, and its 80-column default would squeeze result tables, so use a wide page.
"""

import sys

from rich.console import Console

PAGE_WIDTH = 160

console = Console(width=None if sys.stdout.isatty() else PAGE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PAGE_WIDTH)
