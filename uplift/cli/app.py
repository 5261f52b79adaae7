"""The typer application every command module registers on, and shared option parsing."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from uplift.exceptions import ConfigError

__all__ = ["app", "debug_requested", "parse_numbers", "parse_pairs", "reset_debug"]

app = typer.Typer(
    name="uplift",
    help="Order-cancellation prevention: holdout tests, uplift models, policy, weekly report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_debug = False


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error (also: UPLIFT_DEBUG=1)."),
    ] = False,
) -> None:
    # No docstring: typer would show it instead of the app's help.
    global _debug
    _debug = debug


def debug_requested() -> bool:
    """Whether the user asked for tracebacks: ``uplift --debug ...`` or ``UPLIFT_DEBUG=1``."""
    return _debug or os.environ.get("UPLIFT_DEBUG", "") not in ("", "0")


def reset_debug() -> None:
    """Forget an earlier run's --debug (several runs in one process, as in tests)."""
    global _debug
    _debug = False


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """Parse the repeated ``key=value`` values of one option into a dict, rejecting bad ones."""
    parsed: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{option} expects key=value; got {pair!r}")
        if key.strip() in parsed:
            raise ConfigError(f"{option} names {key.strip()!r} twice")
        parsed[key.strip()] = value.strip()
    return parsed


def parse_numbers(pairs: list[str] | None, option: str) -> dict[str, float]:
    """Parse the ``arm=number`` values of one option into floats."""
    numbers: dict[str, float] = {}
    for key, value in parse_pairs(pairs, option).items():
        try:
            numbers[key] = float(value)
        except ValueError:
            raise ConfigError(f"{option} {key}={value!r}: {value!r} is not a number") from None
    return numbers
