"""Outcomes under a given assignment come from the world's truth; the loop can close on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.files import write_table
from uplift.data.log import ExperimentLog, read_log
from uplift.data.outcomes import simulate_outcomes
from uplift.data.simulate import ARMS, TREATMENT_ARMS, pending_orders, simulate
from uplift.exceptions import SchemaError
from uplift.experiment.readout import readout

ORDERS = 40_000
# A rate estimated from n Bernoulli draws has standard error <= 0.5 / sqrt(n); four of them
# bound a correct simulator's miss with probability 1 - 6e-5.
SE_BAND = 4


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    sim = simulate(ORDERS, weeks=1, seed=21)
    return pending_orders(sim.log), sim.truth


def assign(orders: pd.DataFrame, arms: np.ndarray, propensity: float) -> pd.DataFrame:
    return pd.DataFrame({"order_id": orders["order_id"], "arm": arms, "propensity": propensity})


@pytest.mark.parametrize("arm", ["control", "payment_rescue", "agent_call"])
def test_every_order_on_one_arm_cancels_at_that_arms_true_rate(
    world: tuple[pd.DataFrame, pd.DataFrame], arm: str
) -> None:
    orders, truth = world
    log = simulate_outcomes(orders, truth, assign(orders, np.full(ORDERS, arm), 1.0), seed=1)
    true_rate = truth[f"p_cancel_{arm}"].mean()
    se = np.sqrt(true_rate * (1 - true_rate) / ORDERS)
    assert abs(log["cancelled"].mean() - true_rate) < SE_BAND * se
    np.testing.assert_allclose(log["revenue"], log["order_value"] * (1 - log["cancelled"]))
    assert (log["arm"] == arm).all()


def test_a_randomised_assignment_reads_out_the_true_effects(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    orders, truth = world
    arms = np.random.default_rng(3).choice(ARMS, ORDERS)
    log = simulate_outcomes(orders, truth, assign(orders, arms, 1 / len(ARMS)), seed=2)
    result = readout(ExperimentLog.from_frame(log, source="closed loop"))
    effects = result.effects.query("metric == 'cancel_rate'").set_index("arm")
    for arm in TREATMENT_ARMS:
        # The true effect on these very orders; the readout's interval is the test's band.
        target = (truth[f"p_cancel_{arm}"] - truth["p_cancel_control"]).mean()
        row = effects.loc[arm]
        se = (row["ci_upper"] - row["ci_lower"]) / (2 * 1.959964)
        assert abs(row["difference"] - target) < SE_BAND * se, arm


def test_the_same_seed_draws_the_same_outcomes(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    orders, truth = world
    queue = assign(orders, np.full(ORDERS, "expedite"), 0.9)
    first = simulate_outcomes(orders, truth, queue, seed=5)
    pd.testing.assert_frame_equal(first, simulate_outcomes(orders, truth, queue, seed=5))
    assert not first.equals(simulate_outcomes(orders, truth, queue, seed=6))
    assert (first["propensity"] == 0.9).all()


def test_bad_assignments_are_named(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    orders, truth = world
    small = orders.head(5)
    with pytest.raises(SchemaError, match=r"q.csv: column arm holds arms .* \(teleport\)"):
        simulate_outcomes(
            small, truth, assign(small, np.array(["teleport"] * 5), 1.0), source="q.csv"
        )
    with pytest.raises(SchemaError, match=r"propensity must lie in \(0, 1\] in 5 row"):
        simulate_outcomes(small, truth, assign(small, np.full(5, "control"), 0.0))
    with pytest.raises(SchemaError, match=r"assignment: no row for the orders in 1 row\(s\): 5"):
        simulate_outcomes(small, truth, assign(small, np.full(5, "control"), 1.0).head(4))
    decided = simulate_outcomes(small, truth, assign(small, np.full(5, "control"), 1.0))
    with pytest.raises(SchemaError, match="orders already hold arm"):
        simulate_outcomes(decided, truth, assign(small, np.full(5, "control"), 1.0))


def test_the_command_line_closes_the_loop(
    uplift_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        uplift_cli("simulate", "--orders", "4000", "--weeks", "1", "--out", "log.parquet")[0] == 0
    )
    assert uplift_cli("train", "log.parquet", "--model-dir", "model", "--learner", "t_lgbm")[0] == 0
    nxt = simulate(3000, weeks=1, seed=8, start_week="2026-W41", first_order_id=10_000)
    write_table(pending_orders(nxt.log), tmp_path / "pending.parquet")
    write_table(nxt.truth, tmp_path / "pending.truth.parquet")
    ranked = uplift_cli(
        "rank", "pending.parquet", "--model-dir", "model", "--out", "queue.parquet",
        "--holdout", "0.1", "--explore", "0.05",
    )  # fmt: skip
    assert ranked.exit_code == 0, ranked.output
    done = uplift_cli(
        "simulate", "--orders-from", "pending.parquet", "--assign", "queue.parquet",
        "--out", "next.parquet",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    log = read_log(tmp_path / "next.parquet")
    queue = pd.read_parquet(tmp_path / "queue.parquet").set_index("order_id")
    assert len(log) == 3000
    assert log.frame["arm"].tolist() == queue.loc[log.frame["order_id"], "arm"].astype(str).tolist()
    np.testing.assert_allclose(
        log.frame["propensity"], queue.loc[log.frame["order_id"], "propensity"]
    )
    missing = uplift_cli(
        "simulate", "--orders-from", "pending.parquet", "--assign", "queue.parquet",
        "--truth", "nowhere.parquet", "--out", "other.parquet",
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "no truth for pending.parquet" in missing.stderr
