"""`uplift predict --engine spark` and `uplift rank --engine spark`: Parquet in, Parquet out.

Each job reads a Parquet file or directory, works on Spark and writes a Parquet directory whole
or not at all (with its ``--json`` file, written just before the directory is renamed into
place). The command line resolves the options exactly as for the pandas engine and prints
the result; these functions do the Spark part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from uplift.data.files import json_output, write_outputs
from uplift.data.log import ColumnMap
from uplift.exceptions import ConfigError, SchemaError
from uplift.models import read_effects
from uplift.models.risk import RISK_COLUMNS
from uplift.models.uplift_model import UpliftModel
from uplift.spark.allocation import SparkAssignment, rank_orders
from uplift.spark.errors import executor_errors
from uplift.spark.io import (
    check_output_dir,
    column,
    effects_control,
    read_orders,
    read_parquet,
    with_effects_control,
    write_parquet_dir,
)
from uplift.spark.scoring import score_orders
from uplift.spark.session import quiet_conversions
from uplift.spark.values import effects_arms

__all__ = ["Predicted", "predict_job", "rank_job"]


@dataclass(frozen=True)
class Predicted:
    """What ``predict_job`` wrote: the model, the number of orders and the JSON payload."""

    model: UpliftModel
    orders: int
    payload: dict[str, Any]


def predict_job(
    spark: SparkSession,
    orders_path: Path,
    model_dir: Path,
    out: Path,
    *,
    column_map: ColumnMap,
    trust: bool,
    check_model: Callable[[UpliftModel], None],
    json_path: Path | None = None,
) -> Predicted:
    """Score every order of ``orders_path`` and write the effects table to ``out``."""
    check_output_dir(out)
    with executor_errors():
        orders = read_orders(spark, orders_path, column_map)
        model, table = score_orders(orders, model_dir, trust=trust, source=str(orders_path))
        check_model(model)
        table = with_effects_control(table, model.control)
        facts: dict[str, Any] = {}

        def commit(written: Path) -> None:
            effects = spark.read.parquet(str(written))
            columns = list(model.effect_columns)
            row = effects.agg(F.count(F.lit(1)), *[F.avg(column(c)) for c in columns]).first()
            if row is None:  # an aggregate without grouping has one row
                raise SchemaError(f"{out}: nothing was written")
            facts["orders"] = int(row[0])
            facts["payload"] = {
                "orders": int(row[0]),
                "out": str(out),
                "mean": {c: float(row[i + 1]) for i, c in enumerate(columns)},
                "control": model.control,
            }
            if json_path is not None:
                write_outputs(json_output(facts["payload"], json_path))

        write_parquet_dir(table, out, before_commit=commit)
    return Predicted(model, facts["orders"], facts["payload"])


def rank_job(
    spark: SparkSession,
    orders_path: Path,
    out: Path,
    *,
    column_map: ColumnMap,
    model_dir: Path | None,
    effects_path: Path | None,
    trust: bool,
    check_model: Callable[[UpliftModel], None],
    control: str | None,
    costs: Callable[[UpliftModel | None], Mapping[str, float]],
    options: Mapping[str, Any],
    json_path: Path | None = None,
    payload: Callable[[SparkAssignment, int], dict[str, Any]] | None = None,
) -> tuple[SparkAssignment, dict[str, float]]:
    """Rank the orders of ``orders_path`` (scored by ``model_dir``, or with the effects of
    ``effects_path``) and write the queue to ``out``. ``costs`` gives the costs to use once
    the model is known; ``options`` are :func:`uplift.spark.rank_orders`'s other arguments."""
    check_output_dir(out)
    with executor_errors():
        orders = read_orders(spark, orders_path, column_map)
        if "order_id" not in orders.columns:
            raise SchemaError(
                f"{orders_path}: no order_id column; the queue keys every order by it"
            )
        model, cached = None, None
        if model_dir is not None:
            model, effects = score_orders(orders, model_dir, trust=trust, source=str(orders_path))
            check_model(model)
            control = model.control
        else:
            effects, control, cached = _joined_effects(
                spark, orders, orders_path, effects_path, control
            )
        try:
            _check_order_arms(orders, effects, control, orders_path)
            used = dict(costs(model))
            assignment = rank_orders(
                effects, control=control, costs=used, source=str(orders_path), **options
            )
            try:
                count: dict[str, int] = {}

                def commit(written: Path) -> None:
                    count["orders"] = spark.read.parquet(str(written)).count()
                    if json_path is not None and payload is not None:
                        done = payload(assignment, count["orders"])
                        write_outputs(json_output(done, json_path))

                write_parquet_dir(assignment.queue, out, before_commit=commit)
            finally:
                assignment.unpersist()
        finally:
            if cached is not None:
                cached.unpersist()
    return assignment, used


def _joined_effects(
    spark: SparkSession,
    orders: DataFrame,
    orders_path: Path,
    effects_path: Path | None,
    control: str | None,
) -> tuple[DataFrame, str | None, DataFrame]:
    """The effects of the orders of ``orders_path``, from a table `uplift predict` wrote."""
    if effects_path is None:
        raise SchemaError("give --model-dir or --effects")
    effects = read_parquet(spark, effects_path, "--effects")
    if "order_id" not in effects.columns:
        raise SchemaError(f"{effects_path}: no order_id column; the queue keys every order by it")
    recorded = effects_control(effects) or _file_control(effects_path, effects.columns, control)
    if recorded is not None and control is not None and control != recorded:
        raise ConfigError(
            f"{effects_path}: the effects' control arm is {recorded!r}, not {control!r}; "
            "drop --control"
        )
    # Risk columns stay behind, as on the pandas engine: a queue ranked from effects carries
    # only the policy's columns.
    effects = effects.select([column(c) for c in effects.columns if c not in RISK_COLUMNS])
    found = effects.withColumn("_found", F.lit(True))
    ids = orders.select(column("order_id"))
    # One join, cached: the check below and the ranking both read it.
    joined = ids.join(found, on="order_id", how="left").persist(StorageLevel.MEMORY_AND_DISK)
    shown = [r["order_id"] for r in joined.filter(F.col("_found").isNull()).limit(5).collect()]
    if shown:
        joined.unpersist()
        raise SchemaError(
            f"{effects_path}: no effects for the orders of {orders_path} with order_id "
            f"{', '.join(map(str, shown))}{' and perhaps more' if len(shown) == 5 else ''}"
        )
    return joined.drop("_found"), recorded or control, joined


def _file_control(path: Path, columns: list[str], control: str | None) -> str | None:
    """The control arm a Parquet file written by the pandas engine records (None if none)."""
    if not path.is_file():
        return None
    empty = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})
    return read_effects(path, empty, control=control).control


def _check_order_arms(
    orders: DataFrame, effects: DataFrame, control: str | None, source: Path
) -> None:
    """An ``arm`` column in the orders may only name arms the model knows."""
    if "arm" not in orders.columns:
        return
    control = effects_control(effects) or control or "control"
    known = [control, *effects_arms(effects.columns, control, str(source))]
    strange = orders.filter(~column("arm").isin(known)).select(column("arm")).distinct()
    with quiet_conversions():
        seen = sorted(map(str, strange.limit(5).toPandas()["arm"]))
    if seen:
        raise SchemaError(
            f"{source}: column 'arm' names arm(s) {', '.join(seen)} the model never saw; the "
            f"model knows {', '.join(known)}"
        )
