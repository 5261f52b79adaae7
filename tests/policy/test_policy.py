"""The policy: exact allocation (checked against HiGHS), queue properties, propensities, the
order world against its oracle, and bad input through the API and the command line."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARM_COSTS, pending_orders, simulate
from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.assignment import EXPLORE_SALT, hash_unit, rank_salt
from uplift.models import save_model, train_uplift
from uplift.models.effects import Effects, NetValue, as_effects
from uplift.models.oracle import true_effects
from uplift.policy.allocation import allocate
from uplift.policy.baselines import pending_payment_rule, treat_all, treat_none
from uplift.policy.ranking import rank_orders, with_reasons

# HiGHS and our dual both solve to float precision; 1e-6 relative is the bar.
LP_RTOL = 1e-6
COSTS = {a: c for a, c in ARM_COSTS.items() if a != "control"}
ARMS = tuple(COSTS)


# --------------------------------------------------------------------------------------------
# Reference: the allocation LP (and MILP) solved by HiGHS, as the policy benchmark builds it
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
bench = importlib.import_module("bench_policy")


@st.composite
def instances(draw: st.DrawFn, with_budget: bool):
    n = draw(st.integers(1, 30))
    k = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    value = rng.normal(0, 5, (n, k))
    if draw(st.booleans()):  # whole numbers: many exact ties between orders and arms
        value = np.round(value / 3)
    cost = rng.uniform(0, 2, (n, k))
    limited = rng.random(k) < 0.7
    cap = np.where(limited, rng.integers(0, n + 1, k), np.inf).astype(float)
    budget = float(rng.uniform(0, n)) if with_budget else math.inf
    return value, cost, cap, budget


def _check_feasible(choice: np.ndarray, cost: np.ndarray, cap: np.ndarray, budget: float):
    k = cost.shape[1]
    assert np.all(np.bincount(choice, minlength=k + 1)[1:] <= cap)
    rows = np.flatnonzero(choice)
    assert cost[rows, choice[rows] - 1].sum() <= budget + 1e-9


@settings(max_examples=150, deadline=None)
@given(instances(with_budget=False))
def test_allocate_equals_highs_lp_with_capacities(instance):
    value, cost, cap, budget = instance
    result = allocate(value, cost, cap, budget)
    _check_feasible(result.choice, cost, cap, budget)
    reference = bench.highs(value, cost, cap, budget, integral=False)
    assert result.objective == pytest.approx(reference, rel=LP_RTOL, abs=LP_RTOL)
    assert result.upper_bound == pytest.approx(reference, rel=LP_RTOL, abs=LP_RTOL)


@settings(max_examples=100, deadline=None)
@given(instances(with_budget=True))
def test_allocate_with_budget_bounds_the_lp_and_rounds_within_the_gap(instance):
    value, cost, cap, budget = instance
    result = allocate(value, cost, cap, budget)
    _check_feasible(result.choice, cost, cap, budget)
    lp = bench.highs(value, cost, cap, budget, integral=False)
    best_integral = bench.highs(value, cost, cap, budget, integral=True)
    # The dual bound is the LP optimum; the rounded choice is feasible, so below the MILP.
    assert result.upper_bound == pytest.approx(lp, rel=LP_RTOL, abs=LP_RTOL)
    assert result.objective <= best_integral + 1e-6
    # Documented gap: at most one order per coupling constraint (capacities + budget).
    coupling = int(np.isfinite(cap).sum()) + 1
    assert lp - result.objective <= coupling * max(value.max(), 0.0) + 1e-6


def test_allocate_fills_identical_orders_exactly_to_capacity():
    # Three identical orders, two arms of capacity one: every order is tied everywhere.
    value = np.full((3, 2), 10.0)
    result = allocate(value, np.zeros((3, 2)), np.array([1.0, 1.0]))
    assert result.objective == 20.0
    assert sorted(result.choice) == [0, 1, 2]
    assert result.prices == pytest.approx([10.0, 10.0])


# --------------------------------------------------------------------------------------------
# Net value and the queue


def net_value(
    effects: Effects | pd.DataFrame,
    costs: dict[str, float] | None = None,
    vouchers: dict[str, float] | None = None,
) -> NetValue:
    return as_effects(effects).net_value(costs, vouchers)


def best_arm(effects: Effects | pd.DataFrame, costs: dict[str, float]) -> np.ndarray:
    return as_effects(effects).best_arm(costs)


def _effects(n: int, seed: int, k: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.95, n)
    uplift = rng.uniform(-0.05, 0.2, (n, k)) * (1 - base)[:, None]
    order_value = rng.lognormal(4, 0.8, n)
    frame = pd.DataFrame({"order_id": np.arange(100, 100 + n)})
    for j in range(k):
        frame[f"retained_uplift_arm{j}"] = uplift[:, j]
        frame[f"revenue_uplift_arm{j}"] = uplift[:, j] * order_value
    frame["retained_base"] = base
    return frame


def test_net_value_charges_a_voucher_on_the_predicted_retention_level():
    effects = pd.DataFrame(
        {
            "order_id": [1, 2],
            "retained_uplift_a": [0.1, 0.1],
            "revenue_uplift_a": [10.0, 10.0],
            "retained_base": [0.5, 0.8],
        }
    )
    values = net_value(effects, costs={"a": 1.0}, vouchers={"a": 5.0})
    # cost = 1 + 5 * P(retained | a) = 1 + 5 * (base + uplift): 4.0 and 5.5.
    np.testing.assert_allclose(values.cost[:, 0], [4.0, 5.5])
    np.testing.assert_allclose(values.value[:, 0], [6.0, 4.5])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cap=st.integers(0, 60),
    # Exploration spends at most 200 * 0.2 * 3 = 120 here, so these budgets leave room.
    budget=st.one_of(st.none(), st.floats(120, 250)),
    holdout=st.floats(0, 0.3),
    explore=st.floats(0, 0.2),
)
def test_rank_orders_queue_is_feasible_and_ranked(seed, cap, budget, holdout, explore):
    effects = _effects(200, seed)
    costs = {"arm0": 1.0, "arm1": 2.0}
    capacity = {"arm0": cap, "arm2": cap // 2}
    result = rank_orders(
        effects,
        costs=costs,
        capacity=capacity,
        budget=budget,
        holdout=holdout,
        explore=explore,
        seed=seed,
    )
    queue = result.queue
    assert len(queue) == 200
    assert set(queue["order_id"]) == set(effects["order_id"])
    policy_rows = ~queue["holdout"] & (queue["reason"] != "explore")
    treated = queue["arm"] != "control"
    assert (queue.loc[treated & policy_rows, "net_value"] > 0).all()
    counts = queue["arm"].value_counts()
    assert all(counts.get(arm, 0) <= limit for arm, limit in capacity.items())
    if budget is not None:
        assert queue["cost"].sum() <= budget + 1e-9
        assert result.budget_used == pytest.approx(queue["cost"].sum())
    assert sorted(queue.loc[treated, "rank"]) == list(range(1, treated.sum() + 1))
    assert queue.loc[~treated, "rank"].isna().all()
    assert queue.loc[treated, "net_value"].is_monotonic_decreasing
    assert ((queue["propensity"] > 0) & (queue["propensity"] <= 1)).all()
    assert (queue.loc[queue["holdout"], "arm"] == "control").all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100))
def test_rank_orders_ranking_is_unchanged_by_scaling_order_values_without_costs(seed, scale):
    effects = _effects(150, seed)
    scaled = effects.copy()
    revenue = [c for c in effects if c.startswith("revenue_uplift_")]
    scaled[revenue] = scaled[revenue] * scale
    capacity = {"arm1": 20}
    first = rank_orders(effects, capacity=capacity).queue
    second = rank_orders(scaled, capacity=capacity).queue
    pd.testing.assert_frame_equal(
        first[["order_id", "arm", "rank"]], second[["order_id", "arm", "rank"]]
    )


def test_rank_orders_same_seed_same_queue_and_holdout_share_is_binomial():
    effects = _effects(20_000, 1)
    first = rank_orders(effects, capacity={"arm0": 500}, holdout=0.1, explore=0.05, seed=7)
    again = rank_orders(effects, capacity={"arm0": 500}, holdout=0.1, explore=0.05, seed=7)
    pd.testing.assert_frame_equal(first.queue, again.queue)
    # Binomial(20000, 0.1): sd = 42 orders; 4 sd keeps a false alarm below 1 in 10,000.
    assert abs(first.queue["holdout"].sum() - 2000) < 4 * math.sqrt(20_000 * 0.1 * 0.9)


def test_rank_orders_draws_by_the_hash_of_uplift_assign_in_any_row_order():
    effects = _effects(5_000, 4, k=4)
    options = {"capacity": {"arm1": 30}, "holdout": 0.1, "explore": 0.2, "seed": 5}
    queue = rank_orders(effects, **options).queue
    ids = queue["order_id"]
    u = hash_unit(ids, rank_salt(5))
    assert (queue["holdout"].to_numpy() == (u < 0.1)).all()
    explored = (u >= 0.1) & (u < 0.3)
    assert ((queue["reason"] == "explore").to_numpy() == explored).all()
    # Each explored order's arm is its second hash's, but for the 30 units of arm1 left to the
    # orders of smallest first draw.
    pick = np.minimum(np.floor(hash_unit(ids, rank_salt(5) + EXPLORE_SALT) * 5), 4).astype(int)
    labels = np.array(["control", "arm0", "arm1", "arm2", "arm3"])
    wanted = np.where(explored, labels[pick], queue["arm"].astype(str))
    arm1 = np.flatnonzero(explored & (wanted == "arm1"))
    assert len(arm1) > 30
    wanted[arm1[np.argsort(u[arm1])][30:]] = "control"
    assert (queue["arm"].astype(str).to_numpy() == wanted).all()
    # The same order gets the same draws and the same arm in any row order.
    shuffled = effects.sample(frac=1.0, random_state=0)
    again = rank_orders(shuffled, **options).queue.set_index("order_id").loc[ids]
    for column in ("arm", "holdout", "reason", "policy_arm"):
        assert (again[column].astype(str).to_numpy() == queue[column].astype(str).to_numpy()).all()


def test_rank_orders_propensity_is_the_probability_of_the_arm_received():
    # Without a binding capacity the policy arm of an order does not depend on the draw, so
    # over many seeds each order's arm frequencies must match the logged propensities.
    effects = _effects(20, 3)
    runs = 300
    queues = [
        rank_orders(effects, costs={"arm0": 1.0}, holdout=0.2, explore=0.15, seed=s).queue
        for s in range(runs)
    ]
    stacked = pd.concat(queues)
    frequency = stacked.groupby(["order_id", "arm"]).size() / runs
    logged = stacked.groupby(["order_id", "arm"])["propensity"].agg(["min", "max"])
    assert np.allclose(logged["min"], logged["max"])
    # Binomial sd of a frequency from 300 runs is at most 0.029; 4 sd for every cell.
    assert np.all(np.abs(frequency - logged["min"]) < 4 * 0.029)


def test_explore_share_respects_a_small_capacity_and_records_its_rationing():
    effects = _effects(2_000, 5)
    result = rank_orders(effects, capacity={"arm1": 10}, explore=0.5, seed=2)
    queue = result.queue
    assert (queue["arm"] == "arm1").sum() <= 10
    explored = queue[(queue["reason"] == "explore") & (queue["arm"] == "arm1")]
    # About 2000 * 0.5 / 4 = 250 orders drew arm1; only 10 can have it: tiny propensities.
    assert (explored["propensity"] < 0.05).all()


# --------------------------------------------------------------------------------------------
# The order world: exact allocation against the oracle and against greedy ranking


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, np.ndarray]:
    sim = simulate(20_000, weeks=1, seed=11, world="easy")
    effects = true_effects(sim.truth, sim.log["order_value"]).to_frame()
    true_net = np.column_stack([np.zeros(len(effects)), net_value(effects, COSTS).value])
    return effects, true_net


# Capacities well below the orders whose best arm they are (about 2,500, 530 and 450).
CAPACITY = {"payment_rescue": 300, "agent_call": 200, "expedite": 150}


def _true_value(queue: pd.DataFrame, effects: pd.DataFrame, true_net: np.ndarray) -> float:
    arm = queue.set_index("order_id").loc[effects["order_id"], "arm"].to_numpy()
    index = pd.Index(["control", *ARMS]).get_indexer(arm)
    return float(true_net[np.arange(len(arm)), index].sum())


def _greedy(effects: pd.DataFrame) -> pd.DataFrame:
    """Greedy by rank: orders by best net value; each gets its best arm while it has room."""
    value = np.column_stack([np.zeros(len(effects)), net_value(effects, COSTS).value])
    best, order = value.argmax(axis=1), np.argsort(-value.max(axis=1), kind="stable")
    arm = np.zeros(len(value), dtype=np.int64)
    for j, name in enumerate(ARMS):
        rows = order[best[order] == j + 1]
        arm[rows[: CAPACITY.get(name, len(rows))]] = j + 1
    labels = np.array(["control", *ARMS], dtype=object)
    return pd.DataFrame({"order_id": effects["order_id"], "arm": labels[arm]})


def test_exact_allocation_on_noisy_effects_beats_greedy_and_nears_the_oracle(world):
    effects, true_net = world
    oracle = rank_orders(effects, costs=COSTS, capacity=CAPACITY)
    assert (oracle.summary.set_index("arm").loc[list(CAPACITY), "shadow_price"] > 0).all()
    oracle_value = _true_value(oracle.queue, effects, true_net)
    assert oracle_value == pytest.approx(oracle.objective, rel=1e-9)
    # A model whose revenue uplift errs by half the spread of the true uplift (R2 about 0.8).
    rng = np.random.default_rng(0)
    noisy = effects.copy()
    for arm in ARMS:
        column = f"revenue_uplift_{arm}"
        noisy[column] += rng.normal(0, 0.5 * effects[column].std(), len(effects))
    chosen = rank_orders(noisy, costs=COSTS, capacity=CAPACITY)
    counts = chosen.queue["arm"].value_counts()
    assert all(counts.get(arm, 0) <= cap for arm, cap in CAPACITY.items())
    exact = _true_value(chosen.queue, effects, true_net)
    greedy = _true_value(_greedy(noisy), effects, true_net)
    assert exact >= 0.85 * oracle_value
    assert exact > greedy
    # With the truth itself, exact is the oracle and greedy still loses.
    assert _true_value(_greedy(effects), effects, true_net) < oracle_value


def test_simple_policies_return_one_arm_per_order(world):
    effects, true_net = world
    orders = simulate(50, weeks=1, seed=3).log
    assert set(treat_none(orders)) == {"control"}
    assert set(treat_all(orders, "expedite")) == {"expedite"}
    rule = pending_payment_rule(orders)
    pending = orders["payment_status"].isin(["pending", "retry_failed"]).to_numpy()
    assert (rule[pending] == "payment_rescue").all()
    assert (rule[~pending] == "control").all()
    unconstrained = best_arm(effects, COSTS)
    index = pd.Index(["control", *ARMS]).get_indexer(unconstrained)
    np.testing.assert_allclose(true_net[np.arange(len(index)), index], true_net.max(axis=1))


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"costs": {"teleport": 1.0}}, ConfigError, "cost given for unknown arm.*teleport"),
        ({"costs": {"control": 1.0}}, ConfigError, "cost given for unknown arm.*control"),
        ({"vouchers": {"arm0": -1.0}}, ConfigError, "voucher must be a finite number >= 0"),
        ({"capacity": {"teleport": 5}}, ConfigError, "capacity given for unknown arm"),
        ({"capacity": {"arm0": -5}}, ConfigError, "whole number of orders >= 0"),
        ({"capacity": {"arm0": 2.5}}, ConfigError, "whole number of orders >= 0"),
        ({"capacity": {"control": 5}}, ConfigError, "control arm"),
        ({"budget": -1.0}, ConfigError, "budget must be a finite number >= 0"),
        ({"holdout": 1.2}, ConfigError, "holdout must be a share"),
        (
            {"explore": 0.9, "budget": 0.0, "costs": {"arm0": 1.0, "arm1": 1.0, "arm2": 1.0}},
            ConfigError,
            "exploration alone would spend",
        ),
        ({"holdout": 0.6, "explore": 0.5}, ConfigError, "must leave orders to the policy"),
    ],
)
def test_rank_orders_rejects_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        rank_orders(_effects(10, 0), **options)


def test_a_full_cost_table_with_a_free_control_arm_is_accepted():
    effects = _effects(50, 0)
    with_control = net_value(effects, costs={"control": 0.0, "arm0": 1.0})
    without = net_value(effects, costs={"arm0": 1.0})
    np.testing.assert_array_equal(with_control.cost, without.cost)


def test_with_reasons_prefixes_decided_orders_only():
    queue = pd.DataFrame(
        {
            "order_id": [7, 8, 9, 10],
            "arm": ["payment_rescue", "control", "expedite", "control"],
            "reason": pd.Categorical(
                ["best net value via payment_rescue", "holdout", "explore", "no arm pays"]
            ),
        }
    )
    why = pd.Series(
        ["payment pending: payment rescue", "x", "y", "paid: no action"], index=[7, 8, 9, 10]
    )
    reasons = with_reasons(queue, why)["reason"].tolist()
    assert reasons == [
        "payment pending: payment rescue; best net value via payment_rescue",
        "holdout",
        "explore",
        "paid: no action; no arm pays",
    ]
    missing = with_reasons(queue, why.drop(10))["reason"].tolist()
    assert missing[3] == "no arm pays"


def test_voucher_without_retention_level_is_a_schema_error():
    effects = _effects(10, 0).drop(columns="retained_base")
    with pytest.raises(SchemaError, match="retained_base"):
        net_value(effects, vouchers={"arm0": 2.0})


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    effects = _effects(300, 4)
    orders = effects[["order_id"]].assign(order_value=100.0, payment_status="pending")
    orders_path, effects_path = tmp_path / "orders.csv", tmp_path / "effects.csv"
    orders.to_csv(orders_path, index=False)
    effects.to_csv(effects_path, index=False)
    return orders_path, effects_path


def test_cli_rank_writes_the_queue_and_json(uplift_cli, files, tmp_path):
    orders_path, effects_path = files
    out, report = tmp_path / "queue.parquet", tmp_path / "rank.json"
    args = ["rank", str(orders_path), "--effects", str(effects_path), "--out", str(out)]
    args += ["--cost", "arm0=1", "--capacity", "arm1=25", "--holdout", "0.1", "--json", str(report)]
    result = uplift_cli(*args)
    assert result.exit_code == 0, result.output
    queue = pd.read_parquet(out)
    assert list(queue.columns) == [
        "order_id",
        "arm",
        "rank",
        "net_value",
        "expected_retained_revenue",
        "cost",
        "holdout",
        "propensity",
        "policy_arm",
        "reason",
    ]
    assert (queue["arm"] == "arm1").sum() <= 25
    payload = json.loads(report.read_text())
    by_arm = {row["arm"]: row for row in payload["summary"]}
    assert by_arm["arm1"]["orders"] == (queue["arm"] == "arm1").sum()
    assert "arm1" in result.output


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--capacity", "teleport=3"], "capacity given for unknown arm"),
        (["--cost", "teleport=3"], "cost given for unknown arm"),
        (["--capacity", "arm0=-1"], "whole number of orders >= 0"),
        (["--budget", "-5"], "budget must be a finite number >= 0"),
        (["--cost", "arm0"], "--cost expects key=value"),
    ],
)
def test_cli_rank_bad_input_exits_2_without_output(uplift_cli, files, tmp_path, extra, match):
    orders_path, effects_path = files
    out = tmp_path / "queue.csv"
    args = ["rank", str(orders_path), "--effects", str(effects_path), "--out", str(out), *extra]
    code, _, stderr = uplift_cli(*args)
    assert code == 2
    assert match in stderr
    assert not out.exists()


def test_cli_rank_rejects_an_arm_the_model_never_saw(uplift_cli, files, tmp_path):
    orders_path, effects_path = files
    orders = pd.read_csv(orders_path).assign(arm="control")
    orders.loc[4, "arm"] = "teleport"
    orders.to_csv(orders_path, index=False)
    code, _, stderr = uplift_cli(
        "rank", orders_path, "--effects", effects_path, "--out", tmp_path / "q.csv"
    )
    assert code == 2
    assert "teleport" in stderr
    assert "never saw" in stderr
    assert "row(s): 5" in stderr


@pytest.mark.slow
def test_cli_rank_predicts_with_a_saved_model(uplift_cli, tmp_path):
    log = simulate(3_000, weeks=1, seed=5).log
    model = train_uplift(ExperimentLog.from_frame(log), learner="t_lgbm", seed=0)
    save_model(model, tmp_path / "model")
    orders_path, out = tmp_path / "orders.csv", tmp_path / "queue.csv"
    pending_orders(simulate(500, weeks=1, seed=6).log).to_csv(orders_path, index=False)
    args = ["rank", str(orders_path), "--model-dir", str(tmp_path / "model"), "--out", str(out)]
    result = uplift_cli(*args, "--capacity", "agent_call=5", "--voucher", "expedite=1")
    assert result.exit_code == 0, result.output
    queue = pd.read_csv(out)
    assert len(queue) == 500
    assert (queue["arm"] == "agent_call").sum() <= 5
    # Every order the policy decided says why its arm fits it (the tree's rule), then why the
    # policy chose it; "usually A, here B" where the order's leaf favours another arm.
    decided = queue.loc[~queue["holdout"], "reason"]
    assert decided.str.contains(": ").all()
    for arm in queue.loc[~queue["holdout"], "arm"].unique():
        rows = queue[(queue["arm"] == arm) & ~queue["holdout"]]
        label = arm.replace("_", " ") if arm != "control" else "no action"
        assert rows["reason"].str.contains(label).all(), arm


@pytest.mark.slow
def test_cli_rank_uses_the_costs_the_model_was_trained_with(uplift_cli, tmp_path):
    log = simulate(3_000, weeks=1, seed=5).log
    # An agent call that costs more than any order is worth is never worth making.
    costs = {"agent_call": 10_000.0}
    model = train_uplift(ExperimentLog.from_frame(log), learner="t_lgbm", costs=costs)
    save_model(model, tmp_path / "model")
    orders_path, out = tmp_path / "orders.csv", tmp_path / "queue.csv"
    pending_orders(simulate(500, weeks=1, seed=6).log).to_csv(orders_path, index=False)
    args = ["rank", str(orders_path), "--model-dir", str(tmp_path / "model"), "--out", str(out)]
    result = uplift_cli(*args)
    assert result.exit_code == 0, result.output
    assert "costs per use of an arm: agent_call=10000" in result.output
    assert "agent_call" not in set(pd.read_csv(out)["arm"])
    # --cost overrides the card's cost of that arm.
    result = uplift_cli(*args, "--cost", "agent_call=0")
    assert result.exit_code == 0, result.output
    assert "costs per use of an arm: agent_call=0" in result.output
    assert "agent_call" in set(pd.read_csv(out)["arm"])
