"""`uplift rank` on Spark: the queue of :func:`uplift.policy.rank_orders`, for orders that do
not fit one machine.

The steps are those of the pandas engine, each distributed:

1. **Net value** per order and arm, in every partition, by ``Effects.net_value``
   (:mod:`uplift.spark.values`).
2. **Holdout and exploration by hash**, as ``uplift assign`` and ``uplift serve`` draw:
   ``u = hash_unit(order_id, salt)``; ``u < holdout`` keeps the order on control, ``u <
   holdout + explore`` gives it the arm ``floor(hash_unit(order_id, salt + ":explore") * (K +
   1))`` of the ``K + 1`` arms (control included, as ``rank_orders`` explores). Where explored
   orders exceed an arm's capacity, those of smallest ``u`` keep it and the rest go to control;
   the exploration propensity is scaled as the pandas engine scales it. The salt defaults to
   ``uplift-rank:<seed>``. The pandas engine draws by the same hash, so an order is held out
   or explored on both engines alike, in any partitioning.
3. **Allocation** of the other orders within the capacities and the budget left, by the
   distributed dual method of :mod:`uplift.spark.prices`: exact, with the same tie and budget
   rules as :func:`uplift.policy.allocation.allocate`, which solves the orders near the prices.
4. **The queue**: arm, net value, expected retained revenue, cost, holdout flag, propensity,
   the arm the policy intends, the reason, and the rank of every order acted on (by net value,
   ties by order_id), with the per-arm summary and the certificate (objective, dual bound).

Where the engines differ, and why:

* **Ties between identical orders.** Orders with exactly equal values compete for the last
  units of a capacity; the pandas engine gives them to the first in its input, this engine to
  the smallest order_id. Both give the same number to each arm and the same net value, and
  the same orders when the input is sorted by order_id.
* **Ranks of equal net values** follow the input order on pandas, the order_id here.
* **Reasons.** With a model, ``uplift rank`` prefixes each reason with the rule of a policy
  tree fitted to a row sample of the whole queue; the Spark queue carries the policy's reason
  alone (arm, capacity, budget, holdout, explore).
* **Shadow prices** with several binding capacities: any optimal prices certify the same
  allocation; the two engines may report different ones (they reach them by different paths),
  and then the arm the policy intends (``policy_arm``) for an order held out or explored, and
  so its propensity, may differ for the few orders whose values lie between the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.assignment import rank_salt
from uplift.models.risk import RISK_COLUMNS
from uplift.policy.ranking import (
    QUEUE_COLUMNS,
    check_capacities,
    check_shares,
    reason_text,
)
from uplift.spark.errors import executor_errors
from uplift.spark.io import column, effects_control
from uplift.spark.prices import Prices, choice_column, priced_choice, solve_prices
from uplift.spark.session import quiet_conversions
from uplift.spark.values import (
    HOLD,
    PICK,
    check_finite,
    cost_column,
    effects_arms,
    net_values,
    non_finite,
    revenue_column,
    value_column,
    with_draws,
)

__all__ = ["MARGIN_ORDERS", "SAMPLE_ORDERS", "SparkAssignment", "rank_orders"]

FloatArray = NDArray[np.float64]
#: Orders of the sample whose allocation estimates the prices.
SAMPLE_ORDERS = 100_000
#: Most orders near the prices that the driver collects and solves exactly (16 bytes per
#: order and arm, and the solver's work); all orders when there are no more than this. A
#: sample's prices are rarely that far off; when they are, a second round starts from the
#: exact prices of the orders collected.
MARGIN_ORDERS = 250_000
_ARM, _POLICY, _HELD, _EXPLORED, _REST = "_arm", "_policy", "_held", "_explored", "_rest"
_REASON = "_reason"
# monotonically_increasing_id puts the partition index above bit 33.
_ROW_BITS = 33


@dataclass(frozen=True)
class SparkAssignment:
    """The queue on Spark and what it is expected to yield, as :class:`uplift.policy.Assignment`.

    ``queue`` is a Spark DataFrame of the columns of ``uplift rank`` (``order_id, arm, rank,
    net_value, expected_retained_revenue, cost, holdout, propensity, policy_arm, reason``, and
    ``risk, cause, cause_share`` when the effects carry them); orders acted on come first, by
    rank. ``summary``, ``budget_used``, ``budget_price``, ``objective`` and ``upper_bound`` are
    as in the pandas engine; ``certificate`` tells how the prices were found. Call
    :meth:`unpersist` when done with the queue.
    """

    queue: DataFrame
    summary: pd.DataFrame
    control: str
    budget: float | None
    budget_used: float
    budget_price: float
    objective: float
    upper_bound: float
    params: Mapping[str, Any] = field(default_factory=dict)
    certificate: Mapping[str, Any] = field(default_factory=dict)
    cached: tuple[DataFrame, ...] = ()

    def unpersist(self) -> None:
        """Release the cached decisions and ranked orders the queue is computed from."""
        for frame in self.cached:
            frame.unpersist()


def rank_orders(
    effects: DataFrame,
    *,
    control: str | None = None,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
    capacity: Mapping[str, float] | None = None,
    budget: float | None = None,
    holdout: float = 0.0,
    explore: float = 0.0,
    seed: int = 0,
    salt: str | None = None,
    sample_orders: int = SAMPLE_ORDERS,
    margin_orders: int = MARGIN_ORDERS,
    source: str = "effects",
) -> SparkAssignment:
    """Allocate arms to the orders of a Spark effects table within capacities and budget.

    ``effects`` has the columns ``uplift predict`` writes (``order_id`` and the uplifts; risk
    columns are carried along). ``control`` defaults to the one the table records, else
    ``control``. The other arguments are those of :func:`uplift.policy.rank_orders`; ``salt``
    (default ``uplift-rank:<seed>``) salts the holdout and exploration hash.
    """
    recorded = effects_control(effects)
    if recorded is not None and control is not None and control != recorded:
        raise ConfigError(
            f"{source}: the effects' control arm is {recorded!r}, not {control!r}; drop --control"
        )
    control = recorded or control or "control"
    arms = effects_arms(effects.columns, control, source)
    caps = check_capacities(capacity, arms, control)
    check_shares(holdout, explore)
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise ConfigError(f"budget must be a finite number >= 0; got {budget!r}")
    if sample_orders < 1 or margin_orders < 1:
        raise ConfigError("sample_orders and margin_orders must be at least 1")
    salt = rank_salt(seed) if salt is None else salt
    keep = [c for c in RISK_COLUMNS if c in effects.columns]
    with executor_errors():
        values = net_values(
            effects,
            control=control,
            costs=costs or {},
            vouchers=vouchers or {},
            source=source,
            keep=keep,
        )
        values = with_draws(values, salt).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            return _rank(
                values,
                arms,
                control,
                caps,
                budget,
                holdout,
                explore,
                seed,
                salt,
                keep,
                sample_orders,
                margin_orders,
                source,
            )
        except BaseException:
            values.unpersist()
            raise


def _rank(
    values: DataFrame,
    arms: tuple[str, ...],
    control: str,
    caps: FloatArray,
    budget: float | None,
    holdout: float,
    explore: float,
    seed: int,
    salt: str,
    keep: list[str],
    sample_orders: int,
    margin_orders: int,
    source: str,
) -> SparkAssignment:
    k = len(arms)
    _check_unique(values, source)
    drawn = _draw_flags(values, k, holdout, explore)
    counts = _counts(drawn, k)
    if counts["non_finite"]:
        check_finite(values, k, source)
    kept, cuts = _trim_exploration(drawn, k, caps, counts["explored"])
    drawn = _apply_trim(drawn, cuts)
    explore_share = np.full(k + 1, 1.0 / (k + 1))
    for j in cuts:
        explore_share[j] *= caps[j - 1] / counts["explored"][j]
    explore_share[0] = 1.0 - explore_share[1:].sum()
    spent = _exploration_spend(drawn, k) if explore > 0 else 0.0
    remaining = math.inf if budget is None else budget - spent
    if remaining < 0:
        raise ConfigError(
            f"exploration alone would spend {spent:.2f} of the budget {budget}; lower --explore "
            "or raise --budget"
        )
    room = caps - kept[1:]
    rest = drawn.filter(F.col(_REST))
    prices = solve_prices(
        rest,
        arms=k,
        capacity=room,
        budget=remaining,
        count=counts["rest"],
        largest=counts["largest"],
        sample_orders=sample_orders,
        margin_orders=margin_orders,
        seed=seed,
    )
    labels = [control, *arms]
    # Cached: the summary, the ranking and the queue all read every order's decision.
    final = _final(drawn, k, prices, holdout, explore, explore_share, keep).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    ranked, queue = _queue(final, labels, _reason_texts(k, prices, labels), keep)
    summary = _summary(final, labels, caps, prices)
    values.unpersist()  # every decision is in ``final`` now
    return SparkAssignment(
        queue=queue,
        summary=summary,
        control=control,
        budget=budget,
        budget_used=spent + prices.spent,
        budget_price=prices.budget_price,
        objective=prices.objective,
        upper_bound=prices.upper_bound,
        params={"holdout": holdout, "explore": explore, "seed": seed, "salt": salt},
        certificate={
            "rounds": prices.rounds,
            "marginal_orders": prices.marginal,
            "prices": [float(p) for p in prices.prices],
        },
        cached=(final, ranked),
    )


# --------------------------------------------------------------------------------------------
# Checks (the pandas engine's, with its messages)


def _check_unique(values: DataFrame, source: str) -> None:
    """Refuse repeated order ids: the queue, its holdout and the driver's decisions key on them."""
    repeated = values.groupBy(column("order_id")).count().filter(F.col("count") > 1).limit(6)
    with quiet_conversions():
        shown = repeated.toPandas()["order_id"].tolist()
    if shown:
        more = " and more" if len(shown) > 5 else ""
        raise SchemaError(
            f"{source}: order_id {', '.join(map(str, shown[:5]))}{more} appear(s) more than "
            "once; every order must appear once"
        )


# --------------------------------------------------------------------------------------------
# Holdout and exploration


def _draw_flags(values: DataFrame, k: int, holdout: float, explore: float) -> DataFrame:
    draw = F.col(HOLD)
    held = draw < F.lit(holdout)
    explored = (draw >= F.lit(holdout)) & (draw < F.lit(holdout + explore))
    arm = F.floor(F.col(PICK) * F.lit(float(k + 1))).cast("int")
    return values.withColumns(
        {
            _HELD: held,
            _EXPLORED: explored,
            _REST: ~held & ~explored,
            "_explore_arm": F.when(explored, F.least(arm, F.lit(k))).otherwise(F.lit(0)),
        }
    )


def _counts(drawn: DataFrame, k: int) -> dict[str, Any]:
    """Orders held out, explored per arm and left to the policy, and their largest |value|."""
    largest = F.greatest(*[F.abs(F.col(value_column(j))) for j in range(k)], F.lit(0.0))
    aggregates = [
        F.sum(F.col(_REST).cast("long")).alias("rest"),
        F.max(F.when(F.col(_REST), largest)).alias("largest"),
        F.sum(non_finite(k).cast("long")).alias("non_finite"),
    ]
    aggregates += [
        F.sum((F.col(_EXPLORED) & (F.col("_explore_arm") == j)).cast("long")).alias(f"e{j}")
        for j in range(k + 1)
    ]
    row = drawn.agg(*aggregates).first()
    if row is None:
        raise SchemaError("the effects hold no orders")
    explored = np.array([int(row[f"e{j}"] or 0) for j in range(k + 1)])
    return {
        "rest": int(row["rest"] or 0),
        "largest": float(row["largest"] or 0.0),
        "non_finite": int(row["non_finite"] or 0),
        "explored": explored,
    }


def _trim_exploration(
    drawn: DataFrame, k: int, caps: FloatArray, explored: NDArray[np.int64]
) -> tuple[NDArray[np.int64], dict[int, tuple[float, Any]]]:
    """Explored orders kept per arm, and per overfull arm the last (draw, order_id) kept."""
    kept = explored.copy()
    over = [j for j in range(1, k + 1) if math.isfinite(caps[j - 1]) and explored[j] > caps[j - 1]]
    cuts: dict[int, tuple[float, Any]] = {}
    if not over:
        return kept, cuts
    order = Window.partitionBy("_explore_arm").orderBy(F.col(HOLD), column("order_id"))
    limit = F.lit(0)
    for j in over:
        limit = F.when(F.col("_explore_arm") == j, F.lit(int(caps[j - 1]))).otherwise(limit)
    ranked = (
        drawn.filter(F.col(_EXPLORED) & F.col("_explore_arm").isin(over))
        .select("_explore_arm", HOLD, column("order_id"), F.row_number().over(order).alias("_n"))
        .filter(F.col("_n") == limit)
    )
    last = {int(r["_explore_arm"]): (float(r[HOLD]), r["order_id"]) for r in ranked.collect()}
    for j in over:
        kept[j] = int(caps[j - 1])
        # A capacity of 0 keeps no explored order: a cut below every draw.
        cuts[j] = last.get(j, (-1.0, None))
    return kept, cuts


def _apply_trim(drawn: DataFrame, cuts: dict[int, tuple[float, Any]]) -> DataFrame:
    """Explored orders beyond an arm's cut go to control."""
    arm = F.col("_explore_arm")
    for j, (draw, order_id) in cuts.items():
        beyond = F.col(HOLD) > F.lit(draw)
        if order_id is not None:
            tied = (F.col(HOLD) == F.lit(draw)) & (column("order_id") > F.lit(order_id))
            beyond = beyond | tied
        arm = F.when((F.col("_explore_arm") == j) & beyond, F.lit(0)).otherwise(arm)
    return drawn.withColumn("_explore_arm", arm) if cuts else drawn


def _picked(per_arm: list[Column], code: Column) -> Column:
    """The entry of arm ``code`` (``j + 1`` for arm ``j``), 0.0 for control."""
    out = F.lit(0.0)
    for j, entry in enumerate(per_arm):
        out = F.when(code == j + 1, entry).otherwise(out)
    return out


def _exploration_spend(drawn: DataFrame, k: int) -> float:
    costs = [F.col(cost_column(j)) for j in range(k)]
    spend = _picked(costs, F.col("_explore_arm"))
    row = drawn.agg(F.sum(F.when(F.col(_EXPLORED), spend)).alias("spent")).first()
    return float(row["spent"] or 0.0) if row is not None else 0.0


# --------------------------------------------------------------------------------------------
# The queue


def _final(
    drawn: DataFrame,
    k: int,
    prices: Prices,
    holdout: float,
    explore: float,
    explore_share: FloatArray,
    keep: list[str],
) -> DataFrame:
    """Every order's arm and intended arm (codes), value, propensity and reason code: the few
    columns the summary, the ranking and the queue read (labels come last, on output)."""
    frame = drawn
    rest_arm = choice_column(k, prices.center, prices.center_budget_price)
    if len(prices.decided):
        decided = _decided_frame(drawn, prices.decided)
        frame = frame.join(F.broadcast(decided), on="order_id", how="left")
        rest_arm = F.coalesce(F.col("_decided"), rest_arm)
    arm = (
        F.when(F.col(_HELD), F.lit(0))
        .when(F.col(_EXPLORED), F.col("_explore_arm"))
        .otherwise(rest_arm)
    )
    frame = frame.withColumn(_ARM, arm)
    policy = priced_choice(k, prices.prices, prices.budget_price)
    frame = frame.withColumn(_POLICY, F.when(F.col(_REST), F.col(_ARM)).otherwise(policy))
    code, policy_code = F.col(_ARM), F.col(_POLICY)
    revenue = _picked([F.col(revenue_column(j)) for j in range(k)], code)
    cost = _picked([F.col(cost_column(j)) for j in range(k)], code)
    share = F.element_at(F.array(*[F.lit(float(s)) for s in explore_share]), code + 1)
    propensity = (
        F.lit(1 - holdout - explore) * (code == policy_code).cast("double")
        + F.lit(holdout) * (code == 0).cast("double")
        + F.lit(explore) * share
    )
    # Reason: by arm received and arm wanted (its best by net value), or chance.
    wanted = choice_column(k, np.zeros(k), 0.0)
    chance = (k + 1) ** 2
    reason = (
        F.when(F.col(_EXPLORED), F.lit(chance))
        .when(F.col(_HELD), F.lit(chance + 1))
        .otherwise(code * (k + 1) + wanted)
    )
    return frame.select(
        column("order_id"),
        code,
        policy_code,
        (revenue - cost).alias("net_value"),
        revenue.alias("expected_retained_revenue"),
        cost.alias("cost"),
        F.col(_HELD).alias("holdout"),
        propensity.alias("propensity"),
        reason.alias(_REASON),
        *map(column, keep),
    )


def _decided_frame(drawn: DataFrame, decided: pd.DataFrame) -> DataFrame:
    """The driver's decisions as a Spark frame keyed by order_id of the orders' own type."""
    schema = f"order_id {drawn.schema['order_id'].dataType.simpleString()}, _decided int"
    rows = decided.rename(columns={"choice": "_decided"}).astype({"_decided": np.int32})
    with quiet_conversions():
        return drawn.sparkSession.createDataFrame(rows, schema=schema)


def _reason_texts(k: int, prices: Prices, labels: list[str]) -> list[str]:
    """The pandas engine's reason texts, by code: arm received x arm wanted, then chance."""
    limited = [False, *(bool(p > 0) for p in prices.prices)]
    texts = [reason_text(labels, a, w, limited[w]) for a in range(k + 1) for w in range(k + 1)]
    return [*texts, "explore", "holdout"]


def _labelled(frame: DataFrame, labels: list[str], texts: list[str], keep: list[str]) -> DataFrame:
    """The queue's columns: arm codes and reason codes as their texts."""
    label = F.array(*[F.lit(a) for a in labels])
    named = {
        "arm": F.element_at(label, F.col(_ARM) + 1),
        "policy_arm": F.element_at(label, F.col(_POLICY) + 1),
        "reason": F.element_at(F.array(*[F.lit(t) for t in texts]), F.col(_REASON) + 1),
    }
    return frame.select(
        *[named[c].alias(c) if c in named else column(c) for c in QUEUE_COLUMNS], *keep
    )


def _queue(
    final: DataFrame, labels: list[str], texts: list[str], keep: list[str]
) -> tuple[DataFrame, DataFrame]:
    """The ranked orders acted on (cached), and the queue: them first, then the others."""
    acted = final.filter(F.col(_ARM) > 0)
    ordered = acted.orderBy(F.desc("net_value"), F.asc("order_id"))
    ranked = ordered.withColumn("_row", F.monotonically_increasing_id()).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    part = F.shiftright(F.col("_row"), _ROW_BITS)
    parts = ranked.groupBy(part.alias("_part")).count().collect()
    sizes = {int(r["_part"]): int(r["count"]) for r in parts}
    offsets = np.zeros(max(sizes, default=0) + 1, dtype=np.int64)
    for index in sorted(sizes):
        offsets[index + 1 :] += sizes[index]
    offset = F.element_at(F.array(*[F.lit(int(o)) for o in offsets]), (part + 1).cast("int"))
    within = F.col("_row").bitwiseAND(F.lit((1 << _ROW_BITS) - 1))
    first = ranked.withColumn("rank", offset + within + 1)
    others = final.filter(F.col(_ARM) == 0).withColumn("rank", F.lit(None).cast("long"))
    queue = _labelled(first, labels, texts, keep).unionByName(
        _labelled(others, labels, texts, keep)
    )
    return ranked, queue


def _summary(final: DataFrame, labels: list[str], caps: FloatArray, prices: Prices) -> pd.DataFrame:
    """Per arm, control first: the summary of the pandas engine's Assignment."""
    grouped = final.groupBy(_ARM).agg(
        F.count(F.lit(1)).alias("orders"),
        F.sum(F.col("holdout").cast("long")).alias("holdout"),
        F.sum("expected_retained_revenue").alias("expected_retained_revenue"),
        F.sum("cost").alias("cost"),
        F.sum("net_value").alias("net_value"),
    )
    with quiet_conversions():
        table = grouped.toPandas().set_index(_ARM)
    codes = range(len(labels))
    summary = pd.DataFrame({"arm": labels})
    summary["orders"] = np.array([int(table["orders"].get(c, 0)) for c in codes], dtype=np.int64)
    summary["holdout"] = np.array([int(table["holdout"].get(c, 0)) for c in codes], dtype=np.int64)
    for name in ("expected_retained_revenue", "cost", "net_value"):
        summary[name] = [float(table[name].get(c, 0.0)) for c in codes]
    capacity = np.concatenate([[math.inf], caps])
    summary["capacity"] = np.where(np.isfinite(capacity), capacity, np.nan)
    summary["capacity_used"] = summary["orders"] / summary["capacity"]
    price = np.concatenate([[np.nan], prices.prices])
    summary["shadow_price"] = np.where(np.isfinite(summary["capacity"]), price, np.nan)
    return summary
