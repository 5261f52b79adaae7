"""Progress in a notebook: a bar that names each step of a long call (training, the weekly job).

The command line has its own live status line (rich); a notebook gets tqdm's widget, or its
text bar where widgets are not available::

    with progress_bar() as say:
        model = train_uplift(log, progress=say)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A progress callback for the ``progress=`` argument: each message ticks the bar and
    becomes its label; ``total`` steps when known, else a count with the time elapsed."""
    with tqdm(total=total, unit="step", bar_format=_FORMAT if total is None else None) as bar:

        def say(message: str) -> None:
            bar.set_description_str(message)
            bar.update(1)

        yield say


_FORMAT = "{desc} [step {n_fmt}, {elapsed}]"
