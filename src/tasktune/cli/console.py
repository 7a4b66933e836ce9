"""The rich consoles every command prints through (stdout for results, stderr for errors)."""

import sys

from rich.console import Console

# Piped output (CI logs, `| tee`) would otherwise be squeezed to 80 columns and truncate the tables.
_WIDTH = None if sys.stdout.isatty() else 140
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)
