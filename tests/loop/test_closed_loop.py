"""The closed loop's bookkeeping: decisions joined to logs, propensities from the queue,
non-compliance left out, the policy's learn check and readout, the loop table, truth scores."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog
from uplift.data.outcomes import simulate_outcomes
from uplift.data.simulate import ARM_COSTS, CONTROL, pending_orders, simulate
from uplift.loop.decisions import loop_table, week_seed
from uplift.loop.store import Store
from uplift.loop.truth import score_week
from uplift.loop.weekly import DEFAULT_LEARNER, WeeklyConfig, WeeklyJob
from uplift.models.oracle import true_effects
from uplift.policy.ranking import rank_orders

COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
CAPACITY = {"expedite": 300.0, "agent_call": 120.0}


def _decided_week(
    seed: int, orders: int, week: str, first: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A week's orders, truth and the queue the true-effect policy gives them."""
    world = simulate(orders, weeks=1, seed=seed, start_week=week, first_order_id=first)
    effects = true_effects(world.truth, world.log["order_value"])
    queue = rank_orders(
        effects, costs=COSTS, capacity=CAPACITY, holdout=0.1, explore=0.05, seed=seed
    ).queue
    return pending_orders(world.log), world.truth, queue


# A policy's week gives the capacity-limited arms to few orders; the log says so, rightly.
@pytest.mark.filterwarnings("ignore:.*fewer than 50.*")
def test_a_log_without_propensities_takes_them_from_the_stored_queue(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    randomised = simulate(2_000, weeks=1, seed=1, start_week="2026-W40")
    store.ingest(ExperimentLog.from_frame(randomised.log))
    pending, truth, queue = _decided_week(2, 2_000, "2026-W41", 10_001)
    store.save_assignment("2026-W40", "m1", queue)
    log = simulate_outcomes(pending, truth, queue, seed=3)
    # The shop's log has no propensity column, and 30 orders got another arm than decided.
    log = log.drop(columns="propensity")
    log.loc[:29, "arm"] = np.where(log.loc[:29, "arm"] == CONTROL, "reassurance", CONTROL)
    store.ingest(ExperimentLog.from_frame(log))
    stored = store.log_frame(["2026-W41"]).set_index("order_id")
    decided = queue.assign(order_id=queue["order_id"].astype(str)).set_index("order_id")
    complied = log["order_id"].astype(str).iloc[30:]
    np.testing.assert_allclose(
        stored.loc[complied, "propensity"], decided.loc[complied, "propensity"]
    )
    # The changed orders keep their arm's share of the log: no decision gave them that arm.
    changed = log["order_id"].astype(str).iloc[:30]
    shares = log["arm"].value_counts(normalize=True)
    np.testing.assert_allclose(
        stored.loc[changed, "propensity"], log["arm"].iloc[:30].map(shares).to_numpy()
    )
    decisions = store.decisions(["2026-W41"]).set_index("order_id")
    assert len(decisions) == 2_000
    assert (decisions.loc[complied, "decided_arm"] == stored.loc[complied, "arm"]).all()
    assert decisions["decided_by"].eq("m1").all()


def test_the_weekly_job_reads_out_the_policy_and_leaves_non_compliance_out(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.duckdb")
    randomised = simulate(6_000, weeks=1, seed=4, start_week="2026-W40")
    store.ingest(ExperimentLog.from_frame(randomised.log))
    config = WeeklyConfig(store=store.path, out=tmp_path / "reports", costs=COSTS, segments=())
    WeeklyJob(config).run("2026-W40")
    pending, truth, queue = _decided_week(5, 6_000, "2026-W41", 10_001)
    store.save_assignment("2026-W40", "m1", queue)
    log = simulate_outcomes(pending, truth, queue, seed=6)
    swapped = log.index[:40]
    log.loc[swapped, "arm"] = np.where(log.loc[swapped, "arm"] == CONTROL, "expedite", CONTROL)
    store.ingest(ExperimentLog.from_frame(log))
    report = WeeklyJob(config).run("2026-W41").report
    assert report.compliance["logged_other_arm"].sum() == 40
    assert report.compliance["decided"].sum() == 6_000
    assert any("non-compliance" in note for note in report.notes)
    # The policy's groups count only complied orders.
    policy = report.policy.set_index("arm")
    kept = log.iloc[40:].merge(queue[["order_id", "policy_arm", "holdout"]], on="order_id")
    for arm in policy.index.drop("total"):
        wanted = kept["policy_arm"] == arm
        assert policy.at[arm, "held"] == int((wanted & kept["holdout"]).sum())
    # The learn check compares exactly the policy's groups for the arms it intended.
    learn = report.learn.by_arm.set_index("arm")
    for arm in learn.index.intersection(policy.index):
        assert learn.at[arm, "n_control"] == policy.at[arm, "held"]
        assert learn.at[arm, "n_treated"] == policy.at[arm, "acted"]
    # The headline of a decided week is the policy's: acted orders against its holdout.
    total = policy.loc["total"]
    assert report.headline.treated_orders == total["acted"]
    assert report.headline.holdout_orders == total["held"]
    measured = policy.index[policy["protected"].notna()].drop("total")
    acted_cost = sum(COSTS[a] * policy.at[a, "acted"] for a in measured)
    assert report.headline.cost == pytest.approx(acted_cost)
    assert report.headline.retained_revenue_protected == pytest.approx(
        total["protected"] + acted_cost
    )
    # Advice from heavily weighted per-arm readouts is not given in a decided week.
    assert all(action.kind == "add_capacity" for action in report.actions)
    # The contest says how much of its interval the explored orders make.
    assert "explored orders carry" in report.models.reason
    assert "twice the exploration share would narrow it by about" in report.models.reason
    # Arms with fewer than 30 orders in a group are not checked (too few for an interval).
    assert (learn[["n_treated", "n_control"]] >= 30).all().all()
    # The loop table: the randomised first week has no policy point, the second has one.
    assert report.loop["week"].tolist() == ["2026-W40", "2026-W41"]
    assert np.isnan(report.loop["protected"].iloc[0])
    assert report.loop["protected"].iloc[1] == pytest.approx(policy.at["total", "protected"])


def test_loop_table_adds_weeks_and_their_variances() -> None:
    table = loop_table(
        [
            {"week": "W1"},
            {"week": "W2", "protected": 100.0, "se": 30.0, "predicted": 120.0},
            {"week": "W3", "protected": 50.0, "se": 40.0, "predicted": 60.0},
        ]
    )
    assert table["cumulative"].tolist() == [0.0, 100.0, 150.0]
    z = table["ci_upper"].iloc[1] - 100.0
    assert table["cumulative_ci_upper"].iloc[2] - 150.0 == pytest.approx(z * 50.0 / 30.0)


def test_score_week_against_the_truth_by_hand() -> None:
    truth = pd.DataFrame(
        {
            "order_id": [1, 2],
            **{f"p_cancel_{a}": [0.5, 0.2] for a in ARM_COSTS},
        }
    ).assign(p_cancel_reassurance=[0.3, 0.2])
    log = pd.DataFrame(
        {
            "order_id": [1, 2],
            "arm": ["reassurance", CONTROL],
            "order_value": [100.0, 50.0],
            "policy_arm": ["reassurance", CONTROL],
            "holdout": [False, False],
        }
    )
    scores = score_week(log, truth, costs=COSTS)
    # Order 1: 100 x (0.5 - 0.3) - 0.10 = 19.9; order 2 kept on control: 0.
    assert scores["true_value"] == pytest.approx(19.9)
    assert scores["true_protected"] == pytest.approx(19.9)
    # The oracle gives reassurance to order 1 too, and nothing pays for order 2.
    assert scores["oracle_value"] == pytest.approx(19.9)
    # Both orders were decided by the policy (neither held out nor explored).
    assert scores["decided_value"] == pytest.approx(19.9)
    assert scores["oracle_decided"] == pytest.approx(19.9)
    held = score_week(log.assign(holdout=[True, False]), truth, costs=COSTS)
    assert held["decided_value"] == 0.0
    assert held["oracle_decided"] == 0.0
    assert held["true_protected"] == 0.0


def test_every_week_draws_its_own_holdout() -> None:
    assert week_seed(0, "2026-W41") != week_seed(0, "2026-W42")
    assert week_seed(0, "2026-W41") == week_seed(0, "2026-W41")


def test_weekly_command_explores_and_records_intents(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(ExperimentLog.from_frame(simulate(3_000, weeks=1, seed=7).log))
    pending = tmp_path / "pending.parquet"
    orders = simulate(2_000, weeks=1, seed=8, start_week="2026-W41", first_order_id=10_001)
    pending_orders(orders.log).to_parquet(pending)
    argv = ["weekly", "--store", store.path, "--out", tmp_path / "reports"]
    argv += ["--pending", pending, "--explore", "0.2", "--holdout", "0.1", "--segment", "category"]
    result = uplift_cli(*argv)
    assert result.exit_code == 0, result.output
    queue = store.assignment("2026-W40")
    # 20% explored and 10% held out, each within 4 binomial sd of 2,000 draws.
    assert (queue["reason"] == "explore").mean() == pytest.approx(0.2, abs=0.036)
    assert queue["holdout"].mean() == pytest.approx(0.1, abs=0.027)
    assert queue["policy_arm"].notna().all()
    decided = ~queue["holdout"] & (queue["reason"] != "explore")
    assert (queue.loc[decided, "arm"] == queue.loc[decided, "policy_arm"]).all()


def test_the_command_line_and_the_job_share_the_default_learner() -> None:
    from uplift.cli.loop import weekly  # noqa: PLC0415 - the command's own signature

    assert inspect.signature(weekly).parameters["learner"].default == DEFAULT_LEARNER
