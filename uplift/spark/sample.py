"""A training sample of a large experiment log, drawn on Spark and returned as pandas.

Models train on one machine; a log of a few hundred million orders does not fit there, and a
uniform sample would leave a small arm or a quiet week with too few orders. :func:`sample_log`
draws a sample stratified by arm and ISO week: every stratum keeps at most ``m`` orders (all of
a stratum smaller than that), with ``m`` chosen so that about ``orders`` are kept in all.

An order of stratum ``s`` is kept when ``hash_unit(order_id, salt) < f_s``, its stratum's
sampling fraction: a Bernoulli draw that is the same for the same order in any partitioning
and on any machine. Its **propensity becomes ``propensity x f_s``**, the probability that it
was both given its arm and drawn into the sample. Weights ``1 / (propensity x f_s)`` then
stand for the log's orders: inverse-propensity and Hajek estimates on the sample are
consistent for the same estimates on the whole log (tests/spark/test_sample.py checks them
within their sampling error), and training weights the strata back to the log's mix. A log
without a propensity column gets each arm's share of the whole log first, as ``read_log``
assumes for the whole log.

A fraction is raised where needed so that no propensity falls below the ``1e-4`` that
``read_log`` accepts (one order standing for more than 10,000); the strata table says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

from uplift.data.normalize import MIN_PROPENSITY
from uplift.exceptions import ConfigError, SchemaError
from uplift.spark.hashing import hash_unit
from uplift.spark.io import column
from uplift.spark.session import quiet_conversions

__all__ = [
    "DEFAULT_SAMPLE_ORDERS",
    "SAMPLE_SALT",
    "TrainingSample",
    "sample_log",
    "stratum_fractions",
]

#: The salt of the sample's draw; another salt draws another sample.
SAMPLE_SALT = "uplift-sample"
#: Orders a training sample holds by default: what one machine trains with selection in about a
#: minute. The default model's share of the oracle's net value (realistic world, 4 seeds,
#: 100,000 fresh test orders; benchmarks/results/learning-curve.md) rises from 67.3% at 200,000
#: orders and 73.1% at 500,000 to 74.4% at 1,000,000 and 79.3% at 2,000,000, still rising, for
#: a fit of 63 s against 40 s and twice the memory. A log
#: with effects far larger or smaller than the realistic world's has a curve of its own: rerun
#: the benchmark with its own simulator settings; pass a larger size where the time allows.
DEFAULT_SAMPLE_ORDERS = 1_000_000
_WEEK, _FRACTION = "_week", "_fraction"


@dataclass(frozen=True)
class TrainingSample:
    """The sampled orders and how they were drawn.

    ``frame`` has the log's columns, the ``propensity`` multiplied by the stratum's fraction.
    ``strata`` has one row per arm and week: ``arm``, ``week`` (``YYYY-Www``, or ``all``
    without ``assigned_at``), ``orders`` in the log, ``fraction``, ``sampled``, and
    ``raised`` (the fraction was raised to keep propensities >= 1e-4).
    """

    frame: pd.DataFrame
    strata: pd.DataFrame
    log_orders: int


def sample_log(
    log: DataFrame,
    orders: int = DEFAULT_SAMPLE_ORDERS,
    *,
    salt: str = SAMPLE_SALT,
    source: str = "log",
) -> TrainingSample:
    """About ``orders`` orders of ``log`` (canonical columns), stratified by arm and week."""
    if int(orders) != orders or orders < 1:
        raise ConfigError(f"orders must be a whole number >= 1; got {orders!r}")
    for needed in ("order_id", "arm"):
        if needed not in log.columns:
            raise SchemaError(f"{source}: no {needed} column; the sample is drawn by it")
    frame = log.withColumn(_WEEK, _week(log, source))
    propensity = column("propensity") if "propensity" in log.columns else None
    counts = frame.groupBy(column("arm"), F.col(_WEEK)).agg(
        F.count(F.lit(1)).alias("orders"),
        F.min(propensity if propensity is not None else F.lit(1.0)).alias("smallest"),
    )
    with quiet_conversions():
        strata = counts.toPandas()
    if strata.empty:
        raise SchemaError(f"{source}: the log holds no orders")
    if strata["arm"].isna().any():
        raise SchemaError(f"{source}: column arm is empty for some orders; every order needs one")
    total = int(strata["orders"].sum())
    if propensity is None:
        # The arm's share of the whole log, as read_log assumes without a propensity column.
        shares = strata.groupby("arm")["orders"].sum() / total
        strata["smallest"] = strata["arm"].map(shares).astype(np.float64)
        propensity = _lookup(column("arm"), shares.to_dict())
    if not (strata["smallest"] > 0).all():
        raise SchemaError(f"{source}: column propensity must lie in (0, 1]")
    strata = stratum_fractions(strata, orders)
    keys = strata[["arm", "week", "fraction"]]
    keys = keys.rename(columns={"week": _WEEK, "fraction": _FRACTION})
    with quiet_conversions():
        fractions = log.sparkSession.createDataFrame(
            keys.astype({"arm": object, _WEEK: object}),
            schema=f"arm {log.schema['arm'].dataType.simpleString()}, {_WEEK} string, "
            f"{_FRACTION} double",
        )
    drawn = frame.join(F.broadcast(fractions), on=["arm", _WEEK], how="inner")
    kept = drawn.filter(hash_unit(column("order_id"), salt) < F.col(_FRACTION))
    weighted = propensity * F.col(_FRACTION)
    chosen = [weighted.alias("propensity") if c == "propensity" else column(c) for c in log.columns]
    if "propensity" not in log.columns:
        chosen.append(weighted.alias("propensity"))
    with quiet_conversions():
        table = kept.select(*chosen, F.col(_WEEK)).toPandas()
    sampled = table.groupby(["arm", _WEEK]).size()
    pairs = zip(strata["arm"], strata["week"], strict=True)
    strata["sampled"] = [int(sampled.get(pair, 0)) for pair in pairs]
    return TrainingSample(frame=table.drop(columns=_WEEK), strata=strata, log_orders=total)


def stratum_fractions(strata: pd.DataFrame, orders: int) -> pd.DataFrame:
    """Each stratum's sampling fraction: at most ``m`` orders per stratum, ``m`` such that the
    strata keep ``orders`` in all (water-filling), raised so that ``propensity x fraction``
    stays >= 1e-4. ``strata`` has ``orders`` and ``smallest`` (propensity) per stratum."""
    sizes = strata["orders"].to_numpy(np.float64)
    cap = _water_level(sizes, float(orders))
    fraction = np.minimum(1.0, cap / sizes)
    floor = np.minimum(1.0, MIN_PROPENSITY / strata["smallest"].to_numpy(np.float64))
    # A hair above the floor: p x f must not round below 1e-4.
    floor = np.minimum(1.0, floor * (1 + 1e-9))
    out = strata.rename(columns={_WEEK: "week"}).copy()
    out["fraction"] = np.maximum(fraction, floor)
    out["raised"] = floor > fraction
    return out.drop(columns="smallest").sort_values(["arm", "week"]).reset_index(drop=True)


def _water_level(sizes: np.ndarray, target: float) -> float:
    """``m`` with ``sum(min(size, m)) = target`` (every stratum whole when target >= total)."""
    if target >= sizes.sum():
        return math.inf
    ordered = np.sort(sizes)
    below = np.concatenate([[0.0], np.cumsum(ordered)[:-1]])
    remaining = len(ordered) - np.arange(len(ordered))
    levels = (target - below) / remaining
    index = int(np.flatnonzero(levels <= ordered)[0])
    return float(levels[index])


def _lookup(key: Column, mapping: dict[object, float]) -> Column:
    out = F.lit(None).cast("double")
    for name, value in mapping.items():
        out = F.when(key == F.lit(name), F.lit(float(value))).otherwise(out)
    return out


def _week(log: DataFrame, source: str) -> Column:
    """The ISO week (``YYYY-Www``, UTC) of ``assigned_at``, or ``all`` without it."""
    if "assigned_at" not in log.columns:
        return F.lit("all")
    kind = log.schema["assigned_at"].dataType
    stamp = column("assigned_at")
    if isinstance(kind, TimestampType):
        # Seconds since the epoch, so the day is the UTC day whatever the session's time zone.
        day = F.date_from_unix_date(F.floor(F.unix_seconds(stamp) / 86400).cast("int"))
    elif isinstance(kind, TimestampNTZType | DateType):
        day = F.to_date(stamp)
    elif isinstance(kind, StringType):
        day = F.to_date(stamp.cast("timestamp"))
    else:
        raise SchemaError(f"{source}: column assigned_at must hold time stamps; got {kind}")
    weekday = (F.dayofweek(day) + 5) % 7  # Monday 0 ... Sunday 6
    thursday = F.date_add(day, F.lit(3) - weekday)  # its year is the ISO year
    week = F.lpad(F.weekofyear(day).cast("string"), 2, "0")
    # An order without a time is kept in a stratum of its own (read_log then says what is
    # wrong with it), not dropped by the join on strata.
    return F.coalesce(F.concat(F.year(thursday).cast("string"), F.lit("-W"), week), F.lit("none"))
