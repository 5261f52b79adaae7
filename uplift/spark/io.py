"""Parquet in and out on Spark: orders read with the user's column map, outputs written whole.

A user's column name never becomes SQL text: columns are picked with :func:`column`, which
quotes the name as a Spark identifier (in backticks, inner backticks doubled, as
:func:`uplift.data.sql.quote_identifier` does for DuckDB), and renamed by position.

:func:`write_parquet_dir` writes a directory of Parquet files the way the pandas engine writes
a file: to a temporary directory beside the target, renamed onto it only when every part is
written, so a failed or killed run leaves no half-written output (what a killed run left is
removed by the next run that writes the same target).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from pyspark.errors import PySparkException, PythonException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from uplift.data.log import ColumnMap
from uplift.exceptions import ConfigError, SchemaError

__all__ = [
    "EFFECTS_METADATA",
    "check_output_dir",
    "column",
    "effects_control",
    "read_orders",
    "read_parquet",
    "with_effects_control",
    "write_parquet_dir",
]

#: Key of the order_id column's metadata that records an effects table's control arm and
#: format (Spark keeps a column's metadata in the Parquet files it writes).
EFFECTS_METADATA = "uplift.effects"
EFFECTS_FORMAT = 1
#: Our temporary directories beside a target: ``.<name>.<pid>.spark-tmp`` (and ``-old``).
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.spark-(?:tmp|old)")
#: Files Spark writes into a Parquet directory; a directory holding anything else is not ours
#: to replace.
_SPARK_FILE = re.compile(r"(part-.*|_SUCCESS|_committed_.*|_started_.*|\..*\.crc)")


def column(name: str) -> Column:
    """The column called ``name``, whatever characters it holds (dots do not mean nesting)."""
    return F.col("`" + name.replace("`", "``") + "`")


def read_parquet(spark: SparkSession, path: Path, option: str = "ORDERS") -> DataFrame:
    """A Parquet file or a directory of Parquet files, or a one-line SchemaError."""
    if not path.exists():
        raise SchemaError(f"{path}: file not found")
    if path.is_file() and path.suffix.lower() != ".parquet":
        raise SchemaError(
            f"{path}: --engine spark reads Parquet (a .parquet file or a directory of them); "
            f"convert {option} to Parquet or use the pandas engine"
        )
    try:
        frame = spark.read.parquet(str(path))
        frame.schema  # noqa: B018 - resolves the files now, so a bad file fails here
    except PySparkException as error:
        raise SchemaError(f"{path}: cannot read as Parquet: {_first_line(error)}") from None
    if not frame.columns:
        raise SchemaError(f"{path}: holds no columns")
    return frame


def read_orders(
    spark: SparkSession, path: Path, column_map: ColumnMap, option: str = "ORDERS"
) -> DataFrame:
    """Orders (or a log) in canonical names: ``column_map`` applied as the pandas engine does."""
    frame = read_parquet(spark, path, option)
    # The map's own checks and renaming, run on an empty frame of the same columns.
    empty = pd.DataFrame(columns=pd.Index(frame.columns, dtype=object))
    orders_map = column_map.to_orders(empty)
    orders_map.apply(empty, str(path))
    renamed = {source: canonical for canonical, source in orders_map.mapping.items()}
    kept = [c for c in frame.columns if c not in set(orders_map.ignore)]
    out = frame.select([column(c).alias(renamed.get(c, c)) for c in kept])
    if column_map.order_value is not None:  # apply() has checked there is no such column
        out = out.withColumn("order_value", F.lit(float(column_map.order_value)))
    return out


def effects_control(frame: DataFrame) -> str | None:
    """The control arm recorded in an effects table's order_id metadata (None if none)."""
    if "order_id" not in frame.columns:
        return None
    recorded = frame.schema["order_id"].metadata.get(EFFECTS_METADATA)
    if recorded is None:
        return None
    try:
        control = json.loads(recorded)["control"] if isinstance(recorded, str) else None
    except (ValueError, KeyError, TypeError):
        control = None
    if not isinstance(control, str):
        raise SchemaError("the effects' metadata is damaged; write them again")
    return control


def with_effects_control(frame: DataFrame, control: str) -> DataFrame:
    """``frame`` with its control arm recorded in the order_id column's metadata."""
    text = json.dumps({"format": EFFECTS_FORMAT, "control": control})
    tagged = column("order_id").alias("order_id", metadata={EFFECTS_METADATA: text})
    return frame.select([tagged if c == "order_id" else column(c) for c in frame.columns])


def check_output_dir(target: Path, option: str = "--out") -> None:
    """Refuse to replace anything but a Parquet directory a previous run wrote."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{option} {target} is a file; --engine spark writes a directory")
    strange = [p.name for p in target.iterdir() if not _SPARK_FILE.fullmatch(p.name)]
    if strange:
        raise ConfigError(
            f"{option} {target} exists and holds {strange[0]!r}, which Spark did not write; "
            "choose a new directory (only a previous Parquet output is replaced)"
        )


def write_parquet_dir(
    frame: DataFrame,
    target: Path,
    option: str = "--out",
    before_commit: Callable[[Path], object] | None = None,
) -> None:
    """Write ``frame`` as a Parquet directory at ``target``, whole or not at all.

    ``before_commit`` gets the written temporary directory before it is renamed onto
    ``target`` (to read figures from it and write the files that go with it); when it fails,
    nothing is renamed.
    """
    check_output_dir(target, option)
    with _temporary_dir(target) as tmp:
        try:
            frame.write.parquet(str(tmp))
        except PySparkException as error:
            if isinstance(error, PythonException):
                raise  # an error inside the job: executor_errors tells it
            raise SchemaError(f"{target}: writing failed: {_first_line(error)}") from None
        if before_commit is not None:
            before_commit(tmp)
        _replace_dir(tmp, target)


@contextmanager
def _temporary_dir(target: Path) -> Iterator[Path]:
    """A fresh temporary directory path beside ``target``, removed on the way out."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.spark-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an old ``target`` is moved aside first, then removed."""
    old = target.with_name(f".{target.name}.{os.getpid()}.spark-old")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)  # put the previous output back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale(target: Path) -> None:
    """Remove the temporary directories of ``target`` that runs killed mid-write left."""
    if not target.parent.is_dir():
        return
    for path in target.parent.iterdir():
        match = _TEMP.fullmatch(path.name)
        if match and match["name"] == target.name and not _alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
