"""Net value per order and arm on Spark, as ``uplift rank`` computes it, in Spark columns.

The values the allocation sees are bit for bit those of
:meth:`~uplift.models.effects.Effects.net_value` (the same operations on the same doubles), and
are computed without leaving the JVM: on a large table a pass through Python workers would cost
more than the whole allocation. The result holds, per treatment arm ``j`` (in the effects'
order), the net value ``value_j``, the expected cost ``cost_j`` and the retained revenue
uplift ``revenue_j``, beside ``order_id`` and the hash draws of the holdout and exploration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from uplift.exceptions import SchemaError
from uplift.experiment.assignment import EXPLORE_SALT
from uplift.models.effects import BASE_COLUMN, Effects, effect_column
from uplift.spark.hashing import hash_unit
from uplift.spark.io import column

__all__ = [
    "HOLD",
    "PICK",
    "check_finite",
    "cost_column",
    "effects_arms",
    "net_values",
    "non_finite",
    "revenue_column",
    "value_column",
    "with_draws",
]

#: The holdout/exploration draw and the draw of an explored order's arm.
HOLD, PICK = "_hold", "_pick"


def value_column(j: int) -> str:
    """Net value of treatment arm ``j`` (0-based, in the effects' order of arms)."""
    return f"_value_{j}"


def cost_column(j: int) -> str:
    """Expected cost of treatment arm ``j``."""
    return f"_cost_{j}"


def revenue_column(j: int) -> str:
    """Expected retained revenue uplift of treatment arm ``j``."""
    return f"_revenue_{j}"


def effects_arms(columns: Sequence[str], control: str, source: str) -> tuple[str, ...]:
    """The treatment arms an effects table's columns name, checked as the pandas engine does."""
    empty = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns if c != "order_id"})
    return Effects.from_frame(empty, control=control, source=source).treatment_arms


def net_values(
    effects: DataFrame,
    *,
    control: str,
    costs: Mapping[str, float],
    vouchers: Mapping[str, float],
    source: str,
    keep: Sequence[str] = (),
) -> DataFrame:
    """``order_id``, then value, cost and revenue per treatment arm, then the ``keep`` columns.

    The arithmetic of :meth:`Effects.net_value`, operation for operation, as Spark columns
    (Java's doubles round as numpy's do, so the values are bit for bit the pandas engine's):
    ``cost = cost_arm + clip(retained_base + retained_uplift, 0, 1) * voucher_arm`` (the
    voucher only where one is given) and ``value = revenue_uplift - cost``. Costs, vouchers and
    the columns they need are checked on the driver by ``net_value`` itself, on no rows, so a
    bad one fails before any job; :func:`check_finite` checks the values.
    """
    if "order_id" not in effects.columns:
        raise SchemaError(f"{source}: no order_id column; the queue keys every order by it")
    arms = effects_arms(effects.columns, control, source)
    empty = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in effects.columns})
    checked = Effects.from_frame(empty.drop(columns="order_id"), control=control, source=source)
    checked.net_value(costs, vouchers)
    columns = {"order_id": column("order_id")}
    for j, arm in enumerate(arms):
        revenue = column(effect_column("revenue", arm)).cast("double")
        cost: Column = F.lit(float(costs.get(arm, 0.0)))
        if vouchers.get(arm, 0.0) > 0:
            level = column(BASE_COLUMN).cast("double") + column(
                effect_column("retained", arm)
            ).cast("double")
            kept = F.least(F.greatest(level, F.lit(0.0)), F.lit(1.0))
            cost = cost + kept * F.lit(float(vouchers[arm]))
        columns[revenue_column(j)] = revenue
        columns[cost_column(j)] = cost
    out = effects.select(
        *[expression.alias(name) for name, expression in columns.items()], *map(column, keep)
    )
    values = {
        value_column(j): F.col(revenue_column(j)) - F.col(cost_column(j)) for j in range(len(arms))
    }
    ordered = ["order_id", *values]
    ordered += [cost_column(j) for j in range(len(arms))]
    ordered += [revenue_column(j) for j in range(len(arms))]
    return out.withColumns(values).select(*ordered, *keep)


def non_finite(arms: int) -> Column:
    """True where an order's value or cost of some arm is missing, NaN or infinite."""
    bad = F.lit(False)
    for j in range(arms):
        for name in (value_column(j), cost_column(j)):
            value = F.col(name)
            bad = bad | value.isNull() | F.isnan(value) | (F.abs(value) == float("inf"))
    return bad


def check_finite(values: DataFrame, arms: int, source: str) -> None:
    """Refuse effects that are missing or infinite, naming up to five orders."""
    rows = values.filter(non_finite(arms)).select("order_id").limit(5).collect()
    if rows:
        shown = ", ".join(str(r["order_id"]) for r in rows)
        raise SchemaError(
            f"{source}: the effects are missing or infinite for order_id {shown}"
            f"{' and perhaps more' if len(rows) == 5 else ''}"
        )


def with_draws(frame: DataFrame, salt: str) -> DataFrame:
    """``frame`` with the holdout draw and the exploration arm's draw of every order."""
    ids = column("order_id")
    return frame.withColumns(
        {HOLD: hash_unit(ids, salt), PICK: hash_unit(ids, salt + EXPLORE_SALT)}
    )
