"""The typer application every command module registers on, and shared option parsing."""

from __future__ import annotations

import typer

from uplift.exceptions import ConfigError

app = typer.Typer(
    name="uplift",
    help="Order-cancellation prevention: holdout tests, uplift models, policy, weekly report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """Parse repeated ``--option key=value`` flags into a dict, rejecting malformed ones."""
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
    """Parse ``--option arm=number`` flags into floats."""
    numbers: dict[str, float] = {}
    for key, value in parse_pairs(pairs, option).items():
        try:
            numbers[key] = float(value)
        except ValueError:
            raise ConfigError(f"{option} {key}={value!r}: {value!r} is not a number") from None
    return numbers
