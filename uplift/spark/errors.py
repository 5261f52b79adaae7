"""Errors raised inside an executor's Python worker, brought back as the package's own.

A :class:`~uplift.exceptions.SchemaError` raised while a partition is scored (a missing input,
an effect that is not finite) reaches the driver wrapped in pyspark's ``PythonException``, with
the worker's traceback as its text. :func:`executor_errors` finds our error's line in that text
and raises the same class with the same message, so the command line prints one line and exits
with code 2, as the pandas engine does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.errors import PythonException

from uplift.exceptions import ConfigError, ModelLoadError, SchemaError, UpliftError

__all__ = ["executor_errors"]

_CLASSES: dict[str, type[UpliftError]] = {
    "SchemaError": SchemaError,
    "ConfigError": ConfigError,
    "ModelLoadError": ModelLoadError,
    "UpliftError": UpliftError,
}
_LINE = re.compile(r"^uplift\.exceptions\.(\w+): (.+)$", re.M)


@contextmanager
def executor_errors() -> Iterator[None]:
    """Re-raise our errors from executors as themselves; anything else passes unchanged."""
    try:
        yield
    except PythonException as error:
        found = _LINE.findall(str(error))
        if not found or found[-1][0] not in _CLASSES:
            raise
        name, message = found[-1]
        raise _CLASSES[name](message) from None
