"""Everything the command line shows people, on stderr: error lines, progress, tables.

Rich is imported on first use, so that ``mlnmf --help`` does not load it.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn


@functools.cache
def console() -> Console:
    """The stderr console (data goes to stdout, everything for people here)."""
    from rich.console import Console

    # Rich assumes 80 columns when stderr is not a terminal (a log file, a CI job), which
    # squeezes the result tables into ellipses; logs get room unless COLUMNS says otherwise.
    width = None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160
    return Console(stderr=True, highlight=False, width=width)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}
"""Control characters (a newline in a file name) as escapes: an error stays one line."""


def error_line(message: str) -> None:
    """One red line on stderr; never wrapped, never read as markup."""
    from rich.text import Text

    text = f"mlnmf: error: {message.translate(_CONTROL)}"
    console().print(Text(text, style="red"), soft_wrap=True)


def line(text: str, **style: Any) -> None:
    """One line of plain text on stderr (never read as markup, never wrapped)."""
    from rich.text import Text

    console().print(Text(text, **style), soft_wrap=True)


def progress_bar(quiet: bool, *columns: ProgressColumn) -> Progress:
    """A transient progress display on stderr: ``columns`` then the elapsed time."""
    from rich.progress import Progress, TimeElapsedColumn

    return Progress(*columns, TimeElapsedColumn(), console=console(), disable=quiet, transient=True)


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"
