"""The policy against its holdout: coverage of the truth, groups, predictions, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uplift.data.outcomes import simulate_outcomes
from uplift.data.simulate import ARM_COSTS, ARMS, CONTROL, pending_orders, simulate
from uplift.exceptions import SchemaError
from uplift.experiment.holdout import MIN_GROUP, has_decisions, read_out_policy
from uplift.models.oracle import true_effects
from uplift.policy.ranking import rank_orders

COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
CAPACITY = {"expedite": 400.0, "agent_call": 150.0}


def _week(seed: int, orders: int = 8_000) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """A week decided by the true-effect policy (10% holdout, 5% exploration, capacities
    binding): its log joined with the decisions, the true protected net value per arm (true
    effects minus costs summed over the orders that got the arm the policy intended), and the
    true retained uplift per order and arm."""
    world = simulate(orders, weeks=1, seed=seed)
    effects = true_effects(world.truth, world.log["order_value"])
    queue = rank_orders(
        effects, costs=COSTS, capacity=CAPACITY, holdout=0.1, explore=0.05, seed=seed
    ).queue
    log = simulate_outcomes(pending_orders(world.log), world.truth, queue, seed=seed)
    log = log.merge(queue[["order_id", "policy_arm", "holdout"]], on="order_id")
    log["retained"] = 1 - log["cancelled"]
    arm = log["arm"].to_numpy()
    p_cancel = world.truth[[f"p_cancel_{a}" for a in ARMS]].to_numpy()  # same order as log
    p_given = p_cancel[np.arange(len(arm)), pd.Index(ARMS).get_indexer(pd.Index(arm))]
    effect = log["order_value"].to_numpy() * (p_cancel[:, 0] - p_given)
    acted = ~log["holdout"].to_numpy() & (arm == log["policy_arm"].to_numpy()) & (arm != CONTROL)
    cost = log["arm"].map(COSTS).fillna(0.0).to_numpy()
    by_arm = pd.Series(effect - cost)[acted].groupby(arm[acted]).sum()
    return log, by_arm, effects.uplift("retained")


def test_interval_covers_the_true_protected_value() -> None:
    # 60 independent weeks: a correct 95% interval misses 3 on average; the binomial sd of the
    # coverage over 60 weeks is 2.8 points, so [0.85, 1.0] fails a correct interval with
    # probability about 0.3% while an interval half as wide as it should be (coverage ~68%)
    # fails it almost surely.
    hits, z = [], []
    for seed in range(60):
        log, by_arm, _ = _week(seed)
        result = read_out_policy(log, control=CONTROL, costs=COSTS)
        truth = by_arm.reindex(result.by_arm["arm"]).sum()  # over the arms it could measure
        total = result.total
        hits.append(total["protected_ci_lower"] <= truth <= total["protected_ci_upper"])
        z.append((total["protected"] - truth) / total["protected_se"])
    assert 0.85 <= np.mean(hits) <= 1.0
    # No systematic bias: the mean z of 60 weeks has sd 0.13 when unbiased.
    assert abs(np.mean(z)) < 0.4
    assert 0.7 < np.std(z) < 1.3


def test_groups_are_the_intended_arm_acted_and_held() -> None:
    log, _, _ = _week(1)
    result = read_out_policy(log, control=CONTROL, costs=COSTS).by_arm.set_index("arm")
    for arm, row in result.iterrows():
        wanted = log["policy_arm"] == arm
        assert row["held"] == int((wanted & log["holdout"]).sum())
        assert row["acted"] == int((wanted & ~log["holdout"] & (log["arm"] == arm)).sum())
    assert CONTROL not in result.index
    assert result["delivered"].between(0.4, 1.0).all()
    assert (result[["acted", "held"]] >= MIN_GROUP).all().all()


def test_arms_intended_for_too_few_orders_are_named_not_measured() -> None:
    log, _, _ = _week(4, orders=1_500)
    result = read_out_policy(log, control=CONTROL, costs=COSTS)
    small = result.unmeasured.set_index("arm")
    assert len(small) > 0  # at 1,500 orders some arm's holdout has fewer than 30 orders
    assert (small[["acted", "held"]].min(axis=1) < MIN_GROUP).all()
    assert not set(small.index) & set(result.by_arm["arm"])
    assert result.total["acted"] == result.by_arm["acted"].sum()


def test_predictions_are_averaged_over_the_same_orders() -> None:
    log, _, uplift = _week(2)
    result = read_out_policy(log, control=CONTROL, costs=COSTS, predicted_uplift=uplift)
    row = result.by_arm.iloc[0]
    wanted = (log["policy_arm"] == row["arm"]) & (log["holdout"] | (log["arm"] == row["arm"]))
    assert row["predicted_uplift"] == pytest.approx(uplift.loc[wanted, row["arm"]].mean())


def test_needs_the_decision_columns() -> None:
    log, _, _ = _week(3, orders=500)
    assert has_decisions(log)
    assert not has_decisions(log.drop(columns="policy_arm"))
    with pytest.raises(SchemaError, match="policy_arm"):
        read_out_policy(log.drop(columns="policy_arm"), control=CONTROL)
