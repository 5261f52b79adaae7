"""Shared fixtures: the public data sets beside the repository, and the command line.

Command-line tests run ``uplift`` in this process through ``uplift.cli.main``, the function the
installed command runs (with its error handling and exit codes), via :func:`run_cli`. Tests
that need a separate process (killing it, two writers at once) start ``python -m uplift``.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from uplift.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of public experiments; a test that needs it fails loudly when it is missing."""
    if not (SHARED_DATA / "hillstrom" / "hillstrom.csv").is_file():
        pytest.fail(
            f"public data sets not found at {SHARED_DATA}: this test reads the Hillstrom and IHDP "
            "experiments from ../shared/data beside the repository (see README, 'Data')."
        )
    return SHARED_DATA


@pytest.fixture
def hillstrom_here(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Hillstrom log, run from a fresh working folder (where uplift.toml and outputs go)."""
    monkeypatch.chdir(tmp_path)
    return shared_data / "hillstrom" / "hillstrom.csv"


class CliResult(NamedTuple):
    """What one run of the command line did (unpacks as exit code, stdout, stderr)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout, then stderr."""
        return self.stdout + self.stderr


def run_cli(*args: str | Path) -> CliResult:
    """``uplift ARGS`` in this process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, show = sys.argv, warnings.showwarning  # main() sets both for the command's run
    sys.argv = ["uplift", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0
    finally:
        sys.argv, warnings.showwarning = argv, show
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def uplift_cli() -> Callable[..., CliResult]:
    """:func:`run_cli`, for tests."""
    return run_cli
