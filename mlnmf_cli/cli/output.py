"""Everything the command line shows people, on stderr: error lines, progress, tables.

Rich is imported on first use, so that ``mlnmf --help`` does not load it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn
    from rich.text import Text


def console() -> Console:
    """The stderr console (data goes to stdout, everything for people here)."""
    # Rich assumes 80 columns when stderr is not a terminal (a log file, a CI job); logs
    # get room unless COLUMNS says otherwise.
    columns = os.environ.get("COLUMNS")
    width = None if sys.stderr.isatty() or columns else 160
    return _console(width, columns)


@functools.cache
def _console(width: int | None, columns: str | None) -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=width)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}
"""Control characters (a newline in a file name) as escapes: an error stays one line."""


def error_line(message: str) -> None:
    """One red line on stderr; never wrapped, never read as markup."""
    from rich.text import Text

    text = f"mlnmf: error: {message.translate(_CONTROL)}"
    console().print(Text(text, style="red"), soft_wrap=True)


def line(text: str, **style: Any) -> None:
    """One line of plain text on stderr (never read as markup, never wrapped; control
    characters, such as a newline in a file name, escaped)."""
    from rich.text import Text

    console().print(Text(text.translate(_CONTROL), **style), soft_wrap=True)


def progress_bar(quiet: bool, *columns: ProgressColumn) -> Progress:
    """A transient progress display on stderr: ``columns`` then the elapsed time."""
    from rich.progress import Progress, TimeElapsedColumn

    return Progress(*columns, TimeElapsedColumn(), console=console(), disable=quiet, transient=True)


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


# --------------------------------------------------------------------------- tables

FOLD_WIDTH = 14
"""The width a wrapping (text) column is counted with when tables are laid out."""


@dataclass(frozen=True)
class Column:
    """A table column: numbers (``wrap=False``) keep their width and their header is
    stacked one word a line; text (``wrap=True``) wraps, long words folded."""

    name: str
    justify: str = "right"
    wrap: bool = False


def print_table(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], keys: int = 1
) -> None:
    """Print ``rows`` as one table, or, when it would not fit the console's width, as
    several, each repeating the first ``keys`` columns. No cell is ever cut: text
    columns wrap (folding long paths), numbers keep their full width."""
    from rich.table import Table

    widths = [_least_width(c, [r[i] for r in rows]) for i, c in enumerate(columns)]

    def need(group: list[int]) -> int:  # borders and padding: 3 a column, and 1
        return 1 + sum(widths[i] + 3 for i in group)

    limit = console().width
    groups: list[list[int]] = []
    group = list(range(keys))
    for i in range(keys, len(columns)):
        if len(group) > keys and need([*group, i]) > limit:
            groups.append(group)
            group = list(range(keys))
        group.append(i)
    groups.append(group)
    for n, group in enumerate(groups):
        part = "" if len(groups) == 1 else f" ({n + 1}/{len(groups)})"
        table = Table(title=title + part, title_justify="left")
        for i in group:
            c = columns[i]
            header = c.name if c.wrap else "\n".join(c.name.split())
            table.add_column(header, justify=c.justify, no_wrap=not c.wrap, overflow="fold")  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(row[i] for i in group))
        console().print(table)


def _least_width(column: Column, cells: Sequence[str | Text]) -> int:
    """The narrowest the column can be without cutting a cell or a header word."""
    from rich.cells import cell_len
    from rich.text import Text

    texts = [c if isinstance(c, Text) else Text.from_markup(c) for c in cells]
    widest = max([cell_len(line) for t in texts for line in t.plain.splitlines()] or [0])
    header = max(cell_len(word) for word in column.name.split())
    return max(header, min(widest, FOLD_WIDTH) if column.wrap else widest)
