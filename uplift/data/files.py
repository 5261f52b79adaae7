"""Reading and atomically writing tables and JSON files, and checking output paths."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from uplift.exceptions import ConfigError

__all__ = [
    "Output",
    "atomic_path",
    "check_name",
    "check_outputs",
    "check_table_suffix",
    "json_output",
    "remove_stale_temps",
    "table_output",
    "temp_path",
    "text_output",
    "to_json_ready",
    "write_json",
    "write_outputs",
    "write_table",
]

TABLE_SUFFIXES = (".csv", ".parquet")
# Bytes of a Parquet column's dictionary before its values are written plainly. A column of a
# few values (an arm, a reason, a cost) keeps its dictionary; one of a million distinct numbers
# (an effect, a net value) gives it up after 8,192 of them instead of 131,072 (pyarrow's 1 MB):
# a third less time to write a million orders, and no larger a file.
DICTIONARY_PAGE = 1 << 16
#: A temporary file of ours: ``.<name>.<pid>.tmp`` beside its target.
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp")
#: Names that become folders or files: no separators, no leading dot, no ``..``.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --------------------------------------------------------------------------------------------
# Checking paths before any work


def check_name(value: str, option: str) -> str:
    """Return ``value`` if it is safe as one path component (a test's folder), else refuse."""
    if not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{option} {value!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit, and no '..'"
        )
    return value


def check_outputs(
    inputs: Mapping[str, str | Path | None],
    outputs: Mapping[str, str | Path | None],
    folders: Mapping[str, str | Path | None] | None = None,
) -> None:
    """Refuse outputs that would destroy an input or each other, before any work is done.

    Each mapping goes from the option's name (for the message) to its path; None is skipped.
    An output file must not be an input, inside an input folder, another output, or an existing
    folder; an output folder must not be an input file or inside an input folder; and the parent
    of every output must be creatable.
    """
    given_inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    files = {k: Path(v) for k, v in outputs.items() if v is not None}
    dirs = {k: Path(v) for k, v in (folders or {}).items() if v is not None}
    for option, path in files.items():
        if path.is_dir():
            raise ConfigError(f"{option} {path} is a directory; give a file name")
        _check_creatable(option, path.parent)
    for option, path in dirs.items():
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{option} {path} is a file; give a folder")
        _check_creatable(option, path)
    for option, path in {**files, **dirs}.items():
        for source, given in given_inputs.items():
            if _same_file(path, given):
                raise ConfigError(f"{option} {path} is the input {source} {given}; write elsewhere")
            if given.is_dir() and _inside(path, given):
                raise ConfigError(f"{option} {path} is inside the input {source} {given}")
    seen: dict[str, Path] = {}
    for option, path in files.items():
        for other, earlier in seen.items():
            if _same_file(path, earlier):
                raise ConfigError(f"{option} {path} and {other} {earlier} are the same file")
        seen[option] = path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    # Hard links and case-insensitive file systems: only the file system knows.
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _check_creatable(option: str, folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder we may write in."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: cannot create folder {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write in {existing}: permission denied")


def check_table_suffix(path: str | Path) -> None:
    """Reject an output path whose format we cannot write, before any work is done."""
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(
            f"{path}: output must end in .csv or .parquet; got {Path(path).suffix or 'no suffix'!r}"
        )


# --------------------------------------------------------------------------------------------
# Writing atomically


class Output(NamedTuple):
    """One file to write: its target and a function that writes it to a given path."""

    target: Path
    write: Callable[[Path], object]


def temp_path(target: Path) -> Path:
    """Our temporary file for ``target``: ``.<name>.<pid>.tmp`` beside it."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Delete the temporary files of ``target`` that runs killed mid-write left behind.

    Only files named like ours whose process is gone are removed: a live run's are kept.
    """
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        match = _TEMP.fullmatch(path.name)
        if match and match["name"] == target.name and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap liveness test: never remove another run's file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except (OverflowError, ValueError):
        return False
    return True


def _new_temp(target: Path) -> Path:
    tmp = temp_path(target)
    # O_EXCL after the unlink: never write through a file or symlink someone else put there.
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A run that fails half-way therefore never leaves a half-written file behind; what a killed
    run left is removed by :func:`remove_stale_temps` the next time the target is written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = _new_temp(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_outputs(*outputs: Output | None) -> list[Path]:
    """Write several files as one unit; None entries (an option not given) are skipped.

    Every file is written to its temporary file first; only when all succeeded are they renamed
    onto their targets. On any failure every temporary file is removed and no target changes.
    """
    chosen = [o for o in outputs if o is not None]
    targets = [o.target for o in chosen]
    if len({t.absolute() for t in targets}) < len(targets):
        raise ConfigError(f"two outputs are the same file: {', '.join(map(str, targets))}")
    for target in targets:
        if target.is_dir():
            raise ConfigError(f"{target} is a directory; give a file name")
    with ExitStack() as stack:
        # Each atomic_path renames when the stack unwinds without an error, and only then.
        for output in chosen:
            output.write(stack.enter_context(atomic_path(output.target)))
    return targets


# --------------------------------------------------------------------------------------------
# Tables and JSON


def table_output(
    frame: pd.DataFrame, path: str | Path, metadata: Mapping[bytes, bytes] | None = None
) -> Output:
    """``frame`` as CSV or Parquet (by suffix), for :func:`write_outputs`.

    ``metadata`` goes into a Parquet file's schema metadata (a CSV file has nowhere to keep it).
    """
    check_table_suffix(path)
    parquet = Path(path).suffix.lower() == ".parquet"

    def write(tmp: Path) -> None:
        if parquet and metadata:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            merged = {**(table.schema.metadata or {}), **metadata}
            pq.write_table(
                table.replace_schema_metadata(merged),
                tmp,
                dictionary_pagesize_limit=DICTIONARY_PAGE,
            )
        elif parquet:
            frame.to_parquet(tmp, index=False, dictionary_pagesize_limit=DICTIONARY_PAGE)
        else:
            # pyarrow's writer is about ten times faster than pandas' on million-row frames.
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pa_csv.write_csv(table, tmp, pa_csv.WriteOptions(quoting_style="needed"))

    return Output(Path(path), write)


def json_output(payload: Any, path: str | Path) -> Output:
    """``payload`` as indented JSON (numbers unrounded), for :func:`write_outputs`."""
    return text_output(json.dumps(to_json_ready(payload), indent=2) + "\n", path)


def text_output(text: str, path: str | Path) -> Output:
    """``text`` as a file, for :func:`write_outputs`."""
    return Output(Path(path), lambda tmp: tmp.write_text(text))


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix), atomically."""
    write_outputs(table_output(frame, path))
    return Path(path)


def write_json(payload: Any, path: str | Path) -> Path:
    """Write ``payload`` as indented JSON, atomically; numbers stay unrounded."""
    write_outputs(json_output(payload, path))
    return Path(path)


def _plain(value: Any) -> Any:
    """Convert numpy / pandas scalars and containers into JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _plain(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return _plain(value.to_dict())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def to_json_ready(value: Any) -> Any:
    """Return ``value`` with every number a plain Python float / int (NaN becomes null)."""
    return _plain(value)
