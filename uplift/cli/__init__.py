"""The `uplift` command line: every command module registers itself on one typer app."""

from __future__ import annotations

import importlib
import sys
import warnings

import click
import typer

from uplift.cli.app import app
from uplift.exceptions import UpliftError

__all__ = ["app", "main"]

# Each module registers its commands on ``app`` when imported; this order is the order of
# ``uplift --help``: the loop from data to decision to the weekly job.
for _module in ("simulate", "log", "holdout", "models", "policy", "loop"):
    importlib.import_module(f"uplift.cli.{_module}")


def _show_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    """Print warnings as one plain line: users of the command line need no source locations."""
    typer.echo(f"warning: {message}", err=True)


def main() -> None:
    """Run the command line; input errors become one line on stderr and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except UpliftError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
