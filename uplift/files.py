"""Reading and atomically writing tables and JSON files."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from uplift.exceptions import ConfigError

TABLE_SUFFIXES = (".csv", ".parquet")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A run that fails half-way therefore never leaves a half-written file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode any new file would get.
        tmp_path.chmod(0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_table_suffix(path: str | Path) -> None:
    """Reject an output path whose format we cannot write, before any work is done."""
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(
            f"{path}: output must end in .csv or .parquet; got {Path(path).suffix or 'no suffix'!r}"
        )


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix), atomically."""
    check_table_suffix(path)
    with atomic_path(path) as tmp:
        if Path(path).suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            # pyarrow's writer is about ten times faster than pandas' on million-row frames.
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pa_csv.write_csv(table, tmp, pa_csv.WriteOptions(quoting_style="needed"))
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


def write_json(payload: Any, path: str | Path) -> Path:
    """Write ``payload`` as indented JSON, atomically; numbers stay unrounded."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json_ready(payload), indent=2) + "\n")
    return Path(path)
