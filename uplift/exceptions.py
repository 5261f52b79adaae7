"""The error tree of the package.

Every error a user can cause by their input derives from :class:`UpliftError`; the command
line turns it into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "ConfigError",
    "DataWarning",
    "ModelLoadError",
    "ModelVersionWarning",
    "NotFittedError",
    "SchemaError",
    "StoreError",
    "UpliftError",
    "check_option",
    "describe_rows",
]


class UpliftError(Exception):
    """Base class of every error caused by input, options or files."""


class SchemaError(UpliftError, ValueError):
    """A data file or frame does not match what it must hold."""


class ConfigError(UpliftError, ValueError):
    """An option, argument or configuration file is invalid."""


class NotFittedError(UpliftError, AttributeError):
    """A model was used before ``fit``."""


class ModelLoadError(UpliftError):
    """A saved model directory is missing, damaged or incompatible."""


class StoreError(UpliftError):
    """The embedded store refused a write or a read."""


def check_option(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name} must be one of {choices}; got {value!r}")


def describe_rows(rows: Iterable[object], limit: int = 5) -> str:
    """Name the first offending rows and how many there are, for error messages."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{len(rows)} row(s): {shown}{more}"


class DataWarning(UserWarning):
    """Input that can be used, but that the user should know about (small arm, dead feature)."""


class ModelVersionWarning(UserWarning):
    """The model was saved by another version of the package; it may behave differently."""
