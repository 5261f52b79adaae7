"""The queue on Spark: the same arm for every order as the pandas engine, the same net value.

Capacities bind in every test. Each case runs twice where it matters: with every order solved
on the driver (few orders) and with the distributed dual method forced (a small sample and a
small margin, so most orders are assigned by their partition from the prices alone).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from tests.spark.conftest import COSTS
from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.assignment import EXPLORE_SALT, hash_unit, rank_salt
from uplift.models.effects import Effects
from uplift.models.uplift_model import UpliftModel, predict_table
from uplift.policy.ranking import Assignment, rank_orders
from uplift.spark.allocation import SparkAssignment
from uplift.spark.allocation import rank_orders as spark_rank
from uplift.spark.hashing import hash_unit as spark_hash
from uplift.spark.session import quiet_conversions

# Sums of the same floats in another order: equal to about 1e-13 relative; 1e-9 is the bar.
RTOL = 1e-9
# The distributed method, forced on 3,000 orders: a 300-order sample, at most 150 marginal.
DISTRIBUTED = {"sample_orders": 300, "margin_orders": 150}
DIRECT = {"sample_orders": 300, "margin_orders": 1_000_000}
COMPARED = ["arm", "rank", "holdout", "policy_arm", "reason"]
NUMBERS = ["net_value", "expected_retained_revenue", "cost", "propensity"]


@pytest.fixture(scope="module")
def effects(model: UpliftModel, orders: pd.DataFrame) -> Effects:
    return predict_table(model, orders, source="orders")


@pytest.fixture(scope="module")
def capacity(effects: Effects) -> dict[str, float]:
    """Half the orders whose best arm is each of the two most wanted arms: both bind."""
    wanted = pd.Series(effects.best_arm(COSTS)).value_counts().drop("control")
    return {arm: float(n // 2) for arm, n in wanted.iloc[:2].items()}


def _frame(spark: SparkSession, effects: Effects) -> object:
    with quiet_conversions():
        return spark.createDataFrame(effects.to_frame().reset_index(drop=True))


def _queue(assignment: SparkAssignment) -> pd.DataFrame:
    with quiet_conversions():
        queue = assignment.queue.toPandas()
    assignment.unpersist()
    return queue.set_index("order_id").sort_index()


def _assert_same_queue(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected.set_index("order_id").sort_index()
    assert got.index.tolist() == expected.index.tolist()
    for name in COMPARED:
        left = got[name].astype(object).where(got[name].notna(), None).tolist()
        right = expected[name].astype(object).where(expected[name].notna(), None).tolist()
        left = [str(v) if isinstance(v, str) else v for v in left]
        right = [str(v) if isinstance(v, str) else v for v in right]
        assert left == right, f"column {name} differs"
    np.testing.assert_allclose(got[NUMBERS], expected[NUMBERS].astype(np.float64), rtol=0, atol=0)


def _assert_same_totals(
    got: SparkAssignment, expected: Assignment, bound_rtol: float = RTOL
) -> None:
    assert got.objective == pytest.approx(expected.objective, rel=RTOL)
    assert got.upper_bound == pytest.approx(expected.upper_bound, rel=bound_rtol)
    assert got.upper_bound >= got.objective - 1e-9 * abs(got.objective)
    assert got.budget_used == pytest.approx(expected.budget_used, rel=RTOL, abs=1e-9)
    columns = ["orders", "holdout", "expected_retained_revenue", "cost", "net_value"]
    pd.testing.assert_frame_equal(
        got.summary[["arm", *columns]], expected.summary[["arm", *columns]], rtol=RTOL
    )


@pytest.mark.parametrize("method", [DIRECT, DISTRIBUTED], ids=["on-driver", "distributed"])
def test_every_order_gets_the_pandas_arm_with_capacities_binding(
    spark: SparkSession, effects: Effects, capacity: dict[str, float], method: dict[str, int]
) -> None:
    expected = rank_orders(effects, costs=COSTS, capacity=capacity)
    assert (expected.summary.set_index("arm").loc[list(capacity), "shadow_price"] > 0).all()
    got = spark_rank(_frame(spark, effects), costs=COSTS, capacity=capacity, **method)
    if method is DISTRIBUTED:
        assert got.certificate["marginal_orders"] <= 150  # most orders decided by partitions
    _assert_same_totals(got, expected)
    _assert_optimal_prices(got, effects, capacity)
    if method is DIRECT:  # the same call of allocate: the same prices
        np.testing.assert_allclose(
            got.summary["shadow_price"], expected.summary["shadow_price"], rtol=RTOL
        )
    _assert_same_queue(_queue(got), expected.queue)


def _assert_optimal_prices(
    got: SparkAssignment, effects: Effects, capacity: dict[str, float]
) -> None:
    """With several binding capacities the optimal prices form a set, and the engines reach
    different points of it: Spark's must be optimal, i.e. the dual at them is the LP value."""
    prices = got.summary["shadow_price"].fillna(0.0).to_numpy()[1:]
    value = effects.net_value(COSTS).value
    caps = np.array([capacity.get(a, 0.0) for a in effects.treatment_arms])
    dual = np.maximum((value - prices).max(axis=1), 0.0).sum() + caps @ prices
    assert dual == pytest.approx(got.upper_bound, rel=RTOL)
    assert (prices[caps > 0] > 0).all()


@pytest.mark.parametrize("method", [DIRECT, DISTRIBUTED], ids=["on-driver", "distributed"])
def test_a_binding_budget_is_spent_as_on_one_machine(
    spark: SparkSession, effects: Effects, capacity: dict[str, float], method: dict[str, int]
) -> None:
    free = rank_orders(effects, costs=COSTS, capacity=capacity)
    budget = round(free.budget_used * 0.4, 2)
    expected = rank_orders(effects, costs=COSTS, capacity=capacity, budget=budget)
    assert expected.budget_price > 0
    assert expected.budget_used <= budget
    got = spark_rank(
        _frame(spark, effects), costs=COSTS, capacity=capacity, budget=budget, **method
    )
    # Both report a budget price on the feasible side of the same kink, wherever their
    # searches stopped, and a dual bound there: equal to about 1e-6, not to the last digit.
    assert got.budget_price > 0
    assert got.budget_used <= budget
    _assert_same_totals(got, expected, bound_rtol=1e-6)
    _assert_same_queue(_queue(got), expected.queue)


def test_ties_between_identical_orders_go_to_the_smallest_order_id(
    spark: SparkSession, effects: Effects, capacity: dict[str, float]
) -> None:
    """Three copies of every order, competing for the same units: pandas gives a tied unit
    to the first order of its input, Spark to the smallest order_id; sorted ids agree."""
    table = effects.to_frame().reset_index(drop=True).iloc[:1000]
    copies = pd.concat([table] * 3, ignore_index=True)
    copies["order_id"] = np.arange(1, len(copies) + 1)
    copies = copies.sort_values("order_id", kind="stable").reset_index(drop=True)
    tripled = Effects.from_frame(copies)
    cap = {arm: float(int(n) // 3 + 1) for arm, n in capacity.items()}  # splits a group
    expected = rank_orders(tripled, costs=COSTS, capacity=cap)
    with quiet_conversions():
        frame = spark.createDataFrame(copies).repartition(3)
    got = spark_rank(frame, costs=COSTS, capacity=cap, sample_orders=300, margin_orders=400)
    _assert_same_totals(got, expected)
    _assert_same_queue(_queue(got), expected.queue)


def _hash_reference(
    effects: Effects, capacity: dict[str, float], holdout: float, explore: float, seed: int
) -> tuple[pd.DataFrame, Assignment]:
    """The Spark engine's documented rule, computed with pandas: hash draws for holdout and
    exploration (cut by capacity in order of the draw), the pandas allocation for the rest."""
    table = effects.to_frame().reset_index(drop=True)
    ids, arms = table["order_id"], effects.treatment_arms
    salt = rank_salt(seed)
    draw, pick = hash_unit(ids, salt), hash_unit(ids, salt + EXPLORE_SALT)
    held = draw < holdout
    explored = (draw >= holdout) & (draw < holdout + explore)
    arm = np.where(explored, np.floor(pick * (len(arms) + 1)).astype(int), 0)
    room = {}
    for j, name in enumerate(arms, start=1):
        chosen = np.flatnonzero(explored & (arm == j))
        chosen = chosen[np.lexsort((ids.to_numpy()[chosen], draw[chosen]))]
        limit = capacity.get(name, math.inf)
        if len(chosen) > limit:
            arm[chosen[int(limit) :]] = 0
        if name in capacity:
            room[name] = capacity[name] - min(len(chosen), limit)
    rest = ~held & ~explored
    policy = rank_orders(effects.subset(rest), costs=COSTS, capacity=room)
    labels = np.array(["control", *arms], dtype=object)
    expected = pd.DataFrame({"order_id": ids, "arm": labels[arm], "holdout": held})
    by_id = policy.arm_by_order().astype(str)
    expected.loc[rest, "arm"] = by_id.reindex(ids[rest]).to_numpy()
    return expected.set_index("order_id"), policy


def test_holdout_and_exploration_are_the_same_on_both_engines(
    spark: SparkSession, effects: Effects, capacity: dict[str, float]
) -> None:
    holdout, explore, seed = 0.1, 0.2, 3
    tight = {**capacity, "agent_call": 20.0}  # exploration alone overfills agent_call
    expected, policy = _hash_reference(effects, tight, holdout, explore, seed)
    shares = {"holdout": holdout, "explore": explore, "seed": seed}
    pandas = rank_orders(effects, costs=COSTS, capacity=tight, **shares)
    pandas_queue = pandas.queue.set_index("order_id").sort_index()
    got = spark_rank(_frame(spark, effects), costs=COSTS, capacity=tight, **shares, **DISTRIBUTED)
    assert got.params["salt"] == rank_salt(seed)
    queue = _queue(got)
    # The documented rule, then the two engines order by order.
    assert pandas_queue["holdout"].tolist() == expected["holdout"].tolist()
    assert pandas_queue["arm"].astype(str).tolist() == expected["arm"].tolist()
    assert queue["holdout"].tolist() == expected["holdout"].tolist()
    assert queue["arm"].tolist() == expected["arm"].tolist()
    for column in ("arm", "holdout", "reason"):
        assert queue[column].astype(str).tolist() == pandas_queue[column].astype(str).tolist()
    assert queue["rank"].astype("Int64").equals(pandas_queue["rank"].astype("Int64"))
    # The arm the policy intends for an order held out or explored is the best at the shadow
    # prices; with several binding capacities any point of an interval of prices is optimal,
    # and each engine reports its own. Orders differ exactly where the two prices disagree.
    labels = np.array(["control", *effects.treatment_arms], dtype=object)
    value = pd.DataFrame(effects.net_value(COSTS).value, index=effects.to_frame()["order_id"])
    value = value.sort_index().to_numpy()

    def intended(assignment: Any) -> np.ndarray:
        prices = assignment.summary["shadow_price"].fillna(0.0).to_numpy()[1:]
        return labels[np.column_stack([np.zeros(len(value)), value - prices]).argmax(axis=1)]

    ambiguous = intended(got) != intended(pandas)
    drawn = (queue["holdout"] | (queue["reason"] == "explore")).to_numpy()
    assert 0 < ambiguous.sum() < 0.01 * len(queue)  # a few orders between the two prices
    same = ~(ambiguous & drawn)
    assert (queue["policy_arm"] == pandas_queue["policy_arm"].astype(str))[same].all()
    assert (queue["policy_arm"].to_numpy()[drawn] == intended(got)[drawn]).all()
    np.testing.assert_allclose(
        queue["propensity"][same], pandas_queue["propensity"][same], rtol=RTOL
    )
    assert got.objective == pytest.approx(policy.objective, rel=RTOL)
    counts = queue["arm"].value_counts()
    assert counts["agent_call"] == 20
    assert ((queue["reason"] == "holdout") == queue["holdout"]).all()
    # Propensity: policy share where the policy's arm was given, plus holdout and exploration.
    share = queue["propensity"]
    assert share.between(0, 1).all()
    assert (share[queue["holdout"] & (queue["policy_arm"] != "control")] > 0).all()


def test_the_spark_hash_is_the_hash_of_uplift_assign(spark: SparkSession) -> None:
    for ids in (pd.Series([0, 1, -7, 2**40, 123456789]), pd.Series(["a", "0017", "é:ü", " x"])):
        with quiet_conversions():
            frame = spark.createDataFrame(pd.DataFrame({"order_id": ids}))
            got = frame.select(spark_hash(frame["order_id"], "s:1").alias("u")).toPandas()
        np.testing.assert_array_equal(got["u"].to_numpy(), hash_unit(ids, "s:1"))


def test_bad_input_is_refused_in_one_line(spark: SparkSession, effects: Effects) -> None:
    table = effects.to_frame().reset_index(drop=True).iloc[:20]
    with quiet_conversions():
        twice = spark.createDataFrame(pd.concat([table, table.iloc[:2]], ignore_index=True))
        once = spark.createDataFrame(table)
    with pytest.raises(SchemaError, match="appear"):
        spark_rank(twice, costs=COSTS)
    with pytest.raises(ConfigError, match="unknown arm"):
        spark_rank(once, costs=COSTS, capacity={"teleport": 1.0})
    with pytest.raises(ConfigError, match="holdout \\+ explore"):
        spark_rank(once, holdout=0.6, explore=0.5)
