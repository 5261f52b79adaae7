"""The `uplift` command line: every command module registers itself on one typer app."""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from types import FrameType

import typer

# typer >= 0.29 vendors click and gives its "no arguments: show the help" signal no public
# name; this is the one place that reaches into typer's private copy. Every other usage
# error is caught through the public base class typer.TyperException.
from typer._click.exceptions import NoArgsIsHelpError

from uplift.cli.app import app, debug_requested, reset_debug
from uplift.exceptions import UpliftError

__all__ = ["app", "command", "main"]

# Each module registers its commands on ``app`` when imported; this order is the order of
# ``uplift --help``: the loop from data to decision to the weekly job.
for _module in ("simulate", "log", "holdout", "models", "evaluate", "policy", "loop", "serve"):
    importlib.import_module(f"uplift.cli.{_module}")


def _show_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    """Print warnings as one plain line: users of the command line need no source locations."""
    typer.echo(f"warning: {message}", err=True)


def main() -> None:
    """Run the command line; every failure becomes one line on stderr and an exit code.

    0 success and help; 2 usage errors, input errors (UpliftError) and file errors (OSError);
    1 an unexpected error (with --debug or UPLIFT_DEBUG=1: its traceback); 130 interrupted.
    """
    warnings.showwarning = _show_warning
    reset_debug()
    # A terminated run (a scheduler's timeout) unwinds like an error, so its temporary
    # files are removed on the way out.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        sys.exit(_run())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def command() -> None:
    """The installed ``uplift`` (and ``python -m uplift``): :func:`main`, then the process ends.

    Python's own teardown after a command (freeing some 1,300 modules of pandas, numba, SciPy
    and scikit-learn one by one) takes 0.2-0.7 s on a 2-core machine, after every output is
    written and closed. So once the exit handlers have run (logging, temporary folders, Spark),
    the process ends at once; with another thread still alive (a server's, or a library's),
    it ends the usual way, which waits for them. In-process callers (tests) use :func:`main`.
    """
    try:
        main()
    except SystemExit as done:
        if not isinstance(done.code, int | None) or threading.active_count() > 1:
            raise
        code = done.code or 0
    else:  # pragma: no cover - main always exits
        code = 0
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that left, a closed stream
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def _run() -> int:
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as shown:
        # The help is already printed when rich renders it; plain typer puts it in the message.
        if shown.format_message():
            typer.echo(shown.format_message())
        return 0
    except typer.TyperException as error:
        return _fail(_usage_line(error), 2)
    except UpliftError as error:
        return _fail(f"error: {error}", 2, error)
    except BrokenPipeError:
        # `uplift ... | head`: the reader left; say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        return _fail(f"error: {_os_error(error)}", 2, error)
    except (KeyboardInterrupt, typer.Abort):
        return _fail("aborted", 130)
    except Exception as error:
        hint = "" if debug_requested() else " (run with --debug for the traceback)"
        return _fail(f"error: {type(error).__name__}: {error}{hint}", 1, error)
    if code == 130:
        # typer turns Ctrl-C inside a command into exit code 130 without a word.
        return _fail("aborted", 130)
    return code if isinstance(code, int) else 0


def _fail(line: str, code: int, error: BaseException | None = None) -> int:
    """Print ``line`` as one line on stderr (after the traceback when --debug asks for it)."""
    if error is not None and debug_requested():
        traceback.print_exception(error)
    typer.echo(" ".join(line.split()), err=True)
    return code


def _usage_line(error: typer.TyperException) -> str:
    """``error: <what is wrong> (try 'uplift CMD --help')``."""
    context = getattr(error, "ctx", None)
    hint = f" (try '{context.command_path} --help')" if context is not None else ""
    return f"error: {error.format_message()}{hint}"


def _os_error(error: OSError) -> str:
    """``<path>: <reason>``; a rename names its destination, the path the user gave."""
    path = error.filename2 or error.filename
    reason = error.strerror or str(error) or errno.errorcode.get(error.errno or 0, "")
    return f"{path}: {reason}" if path is not None else reason or type(error).__name__


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
