"""What every command shares for output: the console, tables of raw numbers, progress."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

__all__ = ["make_console", "print_frame", "progress"]

# Wide enough for the widest table when output goes to a file or a job's log.
LOG_WIDTH = 140


def make_console(*, stderr: bool = False) -> Console:
    """A console as wide as the terminal, or LOG_WIDTH columns when writing to a file or pipe."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else LOG_WIDTH
    # soft_wrap: a message line is never broken inside a path or a figure; tables keep the width.
    return Console(stderr=stderr, width=width, log_path=False, soft_wrap=True)


def cell(value: Any, digits: int = 4) -> str:
    """One table cell: floats to ``digits`` significant figures with thousands separators."""
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.{digits}g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_frame(out: Console, title: str, frame: pd.DataFrame, digits: int = 4) -> None:
    """Print a frame of raw numbers as a table; text columns left, numbers right."""
    from rich.table import Table

    # The title goes on its own line: a long file path must never wrap mid-sentence.
    out.print(title, soft_wrap=True, markup=False, highlight=False)
    table = Table()
    for column in frame.columns:
        numeric = frame[column].dtype.kind in "biuf"
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(v, digits) for v in row))
    out.print(table)


@contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A progress callback: a live status line on a terminal, nothing when stderr is a log."""
    out = make_console(stderr=True)
    if not out.is_terminal:
        yield lambda _: None
        return
    with out.status("starting") as status:

        def say(message: str) -> None:
            out.log(message)
            status.update(message)

        yield say
