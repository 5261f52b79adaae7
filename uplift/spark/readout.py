"""Read out a holdout test on Spark: the readout's per-arm sums as Spark SQL.

:func:`readout_spark` checks a Spark DataFrame's log with the same aggregate checks as the
DuckDB reader (:func:`uplift.experiment.scan.columns_and_checks`, here failing with a one-line
:class:`~uplift.exceptions.SchemaError` that counts the rows at fault), then runs the same
queries as :func:`uplift.experiment.readout.readout_table` (per-arm and per-segment sums, the
covariates' cross-products and residual sums of regression adjustment) in Spark SQL, and the
same inference on what comes back: the :class:`~uplift.experiment.readout.Readout` is the one
the pandas and DuckDB paths give, to floating-point rounding (Spark's sums are not compensated;
the tests hold them to 1e-9). Values enter the SQL only as bound parameters and names only
quoted, as everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame

from uplift.data.log import CONTROL, ColumnMap
from uplift.exceptions import SchemaError
from uplift.experiment.balance import refuse_table_leaks
from uplift.experiment.design import Design
from uplift.experiment.logtable import SPARK, Kind, LogTable
from uplift.experiment.power import Correction
from uplift.experiment.readout import Readout, readout_table
from uplift.experiment.scan import Problem, columns_and_checks
from uplift.spark.io import read_parquet
from uplift.spark.session import quiet_conversions, spark_session

__all__ = ["read_log_spark", "readout_spark", "spark_log_table"]

_VIEWS = itertools.count()
_KINDS = {
    "tinyint": "numeric",
    "smallint": "numeric",
    "int": "numeric",
    "bigint": "numeric",
    "float": "numeric",
    "double": "numeric",
    "boolean": "bool",
    "string": "text",
    "timestamp": "time",
    "timestamp_ntz": "time",
}


def spark_log_table(
    frame: DataFrame,
    *,
    control: str = CONTROL,
    column_map: ColumnMap | None = None,
    source: str = "<spark>",
) -> LogTable:
    """The log in ``frame`` (a user's columns, mapped by ``column_map``), checked, as SQL.

    Raises
    ------
    SchemaError
        When a check fails: the column and how many rows, in one line.
    """
    spark = frame.sparkSession
    # A name of ours, never the user's: one view per log read out in this session.
    view = f"uplift_readout_log_{next(_VIEWS)}"
    frame.createOrReplaceTempView(view)
    kinds: dict[str, Kind] = {name: _KINDS.get(t, "other") for name, t in frame.dtypes}

    def run(sql: str, params: Sequence[Any]) -> pd.DataFrame:
        with quiet_conversions():
            return spark.sql(sql, args=list(params)).toPandas()

    found = columns_and_checks(
        run, SPARK, view, kinds, column_map or ColumnMap(), control, source, lenient=True
    )
    if isinstance(found, Problem):
        raise SchemaError(f"{source}: {found.message}")
    return found


def readout_spark(
    frame: DataFrame,
    *,
    control: str = CONTROL,
    column_map: ColumnMap | None = None,
    source: str = "<spark>",
    design: Design | None = None,
    alpha: float | None = None,
    correction: Correction | None = None,
    adjust: bool = False,
    covariates: Sequence[str] | None = None,
    sequential: bool = False,
    segment: str | None = None,
    allow: Sequence[str] = (),
) -> Readout:
    """:func:`uplift.experiment.readout.readout` of a log in a Spark DataFrame.

    With ``adjust`` the leak guard runs first on the features (``allow`` keeps flagged ones;
    features that are not among named ``covariates`` are allowed, as on the command line).
    """
    table = spark_log_table(frame, control=control, column_map=column_map, source=source)
    if adjust:
        unused = [f for f in table.features if covariates and f not in covariates]
        refuse_table_leaks(table, allow=(*allow, *unused))
    return readout_table(
        table,
        design=design,
        alpha=alpha,
        correction=correction,
        adjust=adjust,
        covariates=covariates,
        sequential=sequential,
        segment=segment,
    )


def read_log_spark(path: Path, master: str = "local[*]") -> DataFrame:
    """A Parquet log (a file or a directory of them) as a DataFrame on ``master``."""
    return read_parquet(spark_session(master), path, "LOG")
