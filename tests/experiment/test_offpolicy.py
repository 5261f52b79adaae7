"""Off-policy value (IPW, SNIPW, DR): hand-computed values, loop references, simulator truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from uplift.data.simulate import ARM_COSTS, ARMS, simulate
from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.offpolicy import (
    baseline_policies,
    compare_policies,
    policy_value,
    value_policies,
)

EXACT = 1e-9  # sums of a handful of small numbers, equal in exact arithmetic

# Six orders, arms c (control), a, b. Weight w = [policy picks the logged arm] / propensity:
# [0, 2, 4, 2, 4, 0]; cost of the policy's arm per order: [1, 1, 0, 1, 0.5, 1], mean 0.75.
LOG = pd.DataFrame(
    {
        "arm": ["c", "a", "c", "a", "b", "c"],
        "revenue": [1.0, 2.0, 0.0, 4.0, 3.0, 5.0],
        "propensity": [0.5, 0.5, 0.25, 0.5, 0.25, 0.5],
    }
)
POLICY = np.array(["a", "a", "c", "a", "b", "a"])
COSTS = {"a": 1.0, "b": 0.5}
MU = pd.DataFrame({"c": 1.0, "a": 2.0, "b": 2.0}, index=LOG.index)


def _se(contributions: list[float]) -> float:
    return float(np.std(contributions, ddof=1) / np.sqrt(len(contributions)))


def test_ipw_known_value() -> None:
    # w * y = [0, 4, 0, 8, 12, 0]; minus cost: [-1, 3, 0, 7, 11.5, -1], mean 3.25.
    result = policy_value(LOG, POLICY, estimator="ipw", costs=COSTS)
    assert result.value == pytest.approx(3.25, abs=EXACT)
    assert result.se == pytest.approx(_se([-1, 3, 0, 7, 11.5, -1]), abs=EXACT)
    assert result.ci_lower == pytest.approx(3.25 - 1.959963984540054 * result.se, abs=EXACT)
    assert result.n == 6


def test_snipw_known_value() -> None:
    # sum(w y) / sum(w) = 24 / 12 = 2, minus cost 0.75. Delta-method contributions:
    # 2 + w (y - 2) / mean(w) - cost, with mean(w) = 2: [1, 1, -2, 3, 3.5, 1] (mean 1.25).
    result = policy_value(LOG, POLICY, estimator="snipw", costs=COSTS)
    assert result.value == pytest.approx(1.25, abs=EXACT)
    assert result.se == pytest.approx(_se([1, 1, -2, 3, 3.5, 1]), abs=EXACT)


def test_dr_known_value() -> None:
    # Direct part mu[policy arm] = [2, 2, 1, 2, 2, 2]; correction w (y - mu[logged arm]) =
    # [0, 0, -4, 4, 4, 0]; minus cost: [1, 1, -3, 5, 5.5, 1], mean 1.75.
    result = policy_value(LOG, POLICY, estimator="dr", mu=MU, costs=COSTS)
    assert result.value == pytest.approx(1.75, abs=EXACT)
    assert result.se == pytest.approx(_se([1, 1, -3, 5, 5.5, 1]), abs=EXACT)


@pytest.mark.parametrize("estimator", ["ipw", "snipw", "dr"])
def test_one_hot_probabilities_equal_arm_labels(estimator: str) -> None:
    one_hot = pd.get_dummies(pd.Series(POLICY)).astype(float).reindex(columns=["a", "b", "c"])
    as_labels = policy_value(LOG, POLICY, estimator=estimator, mu=MU, costs=COSTS)  # type: ignore[arg-type]
    as_matrix = policy_value(LOG, one_hot, estimator=estimator, mu=MU, costs=COSTS)  # type: ignore[arg-type]
    assert as_matrix == as_labels


def test_snipw_without_matching_orders_is_nan() -> None:
    # No logged order got arm b except order 4; a policy giving b everywhere but there has
    # nothing to learn from, and says so instead of returning 0.
    policy = np.array(["b", "b", "b", "b", "a", "b"])
    result = policy_value(LOG, policy, estimator="snipw")
    assert np.isnan(result.value)
    assert np.isnan(result.se)


# --------------------------------------------------------------------------------------------
# Loop references for a stochastic policy


def _reference(
    log: pd.DataFrame, probs: pd.DataFrame, mu: pd.DataFrame, costs: dict[str, float]
) -> dict[str, float]:
    """IPW and DR values by an explicit loop over orders and arms."""
    ipw = dr = 0.0
    for i in range(len(log)):
        arm = str(log["arm"].iloc[i])
        y, p = float(log["revenue"].iloc[i]), float(log["propensity"].iloc[i])
        pi = {str(a): float(probs[a].iloc[i]) for a in probs.columns}
        weight = pi[arm] / p
        cost = sum(pi[a] * costs.get(a, 0.0) for a in pi)
        direct = sum(pi[a] * float(mu[a].iloc[i]) for a in pi)
        ipw += weight * y - cost
        dr += direct + weight * (y - float(mu[arm].iloc[i])) - cost
    return {"ipw": ipw / len(log), "dr": dr / len(log)}


@pytest.mark.parametrize("seed", range(4))
def test_stochastic_policy_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, arms = 150, ["control", "sms", "call"]
    propensity = rng.dirichlet([2, 2, 2], n)
    logged = np.array([rng.choice(3, p=row) for row in propensity])
    log = pd.DataFrame(
        {
            "arm": np.array(arms)[logged],
            "revenue": rng.gamma(2, 50, n) * (rng.random(n) < 0.8),
            "propensity": propensity[np.arange(n), logged],
        }
    )
    probs = pd.DataFrame(rng.dirichlet([1, 1, 1], n), columns=arms)
    mu = pd.DataFrame(rng.gamma(2, 50, (n, 3)), columns=arms)
    costs = {"sms": 0.1, "call": 4.0}
    expected = _reference(log, probs, mu, costs)
    for estimator in ("ipw", "dr"):
        got = policy_value(log, probs, estimator=estimator, mu=mu, costs=costs)
        assert got.value == pytest.approx(expected[estimator], rel=1e-12)


# --------------------------------------------------------------------------------------------
# compare_policies


def test_compare_policies_pairs_the_difference() -> None:
    policies = {**baseline_policies(["c", "a", "b"], 6, control="c"), "model": POLICY}
    table = compare_policies(LOG, policies, mu=MU, costs=COSTS, control="c")
    assert table.groupby("estimator").size().to_dict() == {"dr": 4, "ipw": 4, "snipw": 4}
    dr = table[table["estimator"] == "dr"].set_index("policy")
    row, none = dr.loc["model"], dr.loc["treat_none"]
    assert row["value"] == pytest.approx(1.75, abs=EXACT)
    assert row["diff"] == pytest.approx(row["value"] - none["value"], abs=EXACT)
    # treat_none under DR: mu[c] + w (y - mu[logged]) with w = [2, 0, 4, 0, 0, 2]:
    # [1, 1, -3, 1, 1, 9]; the paired difference per order is model - treat_none.
    assert row["diff_se"] == pytest.approx(_se([0, 0, 0, 4, 4.5, -8]), abs=EXACT)
    assert row["treated_share"] == pytest.approx(5 / 6)
    assert row["cost"] == pytest.approx(0.75)
    assert row["n_matched"] == 4  # orders 1, 2, 3, 4 logged the arm the model picks
    assert none["diff_se"] == 0


def test_bad_input_is_rejected() -> None:
    with pytest.raises(SchemaError, match="no column 'propensity'"):
        policy_value(LOG.drop(columns="propensity"), POLICY, estimator="ipw")
    with pytest.raises(SchemaError, match=r"must be in \(0, 1\].*1 row\(s\): 2"):
        policy_value(LOG.assign(propensity=[0.5, 0.5, 0.0, 0.5, 0.5, 0.5]), POLICY, estimator="ipw")
    with pytest.raises(ConfigError, match="'dr' needs mu"):
        policy_value(LOG, POLICY, estimator="dr")
    with pytest.raises(ConfigError, match="estimator must be one of"):
        policy_value(LOG, POLICY, estimator="direct")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"policy picks arms .*\['z'\]"):
        policy_value(LOG, ["a", "a", "z", "a", "b", "c"], mu=MU)
    with pytest.raises(SchemaError, match="one arm per order"):
        policy_value(LOG, POLICY[:3], estimator="ipw")
    with pytest.raises(SchemaError, match="sum to 1 per order"):
        policy_value(LOG, MU / 4, estimator="ipw")
    with pytest.raises(SchemaError, match="mu must be indexed like the log"):
        policy_value(LOG, POLICY, mu=MU.iloc[::-1])
    with pytest.raises(ConfigError, match=r"costs name unknown arm\(s\) \['x'\]"):
        policy_value(LOG, POLICY, estimator="ipw", costs={"x": 1.0})
    with pytest.raises(SchemaError, match=r"mu must be finite; NaN or infinite at 1 row\(s\): 3"):
        policy_value(LOG, POLICY, mu=MU.assign(a=[2.0, 2.0, 2.0, np.nan, 2.0, 2.0]))
    with pytest.raises(SchemaError, match="needs at least 2 orders"):
        policy_value(LOG.iloc[:1], POLICY[:1], estimator="ipw")
    with pytest.raises(ConfigError, match="baseline policy 'treat_none'"):
        compare_policies(LOG, {"model": POLICY})


# --------------------------------------------------------------------------------------------
# Simulator truth: coverage and bias over many logged-policy worlds


def _true_values(
    truth: pd.DataFrame, order_value: NDArray[np.float64], policy: NDArray[np.str_]
) -> float:
    """Mean over orders of order_value * (1 - p_cancel of the chosen arm) - its cost."""
    chosen = pd.Index(ARMS).get_indexer(pd.Index(policy))
    p_cancel = truth[[f"p_cancel_{a}" for a in ARMS]].to_numpy()[np.arange(len(truth)), chosen]
    cost = np.array([ARM_COSTS[a] for a in ARMS])[chosen]
    return float(np.mean(order_value * (1 - p_cancel) - cost))


def _simulated_run(seed: int, orders: int) -> pd.DataFrame:
    world = simulate(orders, weeks=1, seed=seed, logged_policy=True)
    log, truth = world.log, world.truth
    value = log["order_value"].to_numpy()
    retained = 1 - truth[[f"p_cancel_{a}" for a in ARMS]].to_numpy()
    # Outcome model: the truth plus per-cell noise and a systematic +0.03 retention bias, so
    # DR must correct a wrong model (the direct part alone would be biased by ~0.03 * value).
    rng = np.random.default_rng(seed + 10_000)
    noisy = np.clip(retained + 0.03 + rng.normal(0, 0.05, retained.shape), 0, 1)
    mu = pd.DataFrame(value[:, None] * noisy, columns=list(ARMS), index=log.index)
    net = mu.to_numpy() - np.array([ARM_COSTS[a] for a in ARMS])
    policies = {
        "treat_none": np.full(len(log), "control"),
        "treat_all_reassurance": np.full(len(log), "reassurance"),
        "model": np.array(ARMS)[net.argmax(axis=1)],
    }
    table = compare_policies(
        log, policies, mu=mu, costs=ARM_COSTS, estimators=("ipw", "snipw", "dr")
    )
    truths = {name: _true_values(truth, value, policy) for name, policy in policies.items()}
    table["truth"] = table["policy"].map(truths)
    table["true_diff"] = table["truth"] - truths["treat_none"]
    table["seed"] = seed
    return table


@pytest.fixture(scope="module")
def simulated_runs() -> pd.DataFrame:
    return pd.concat([_simulated_run(seed, 3000) for seed in range(200)], ignore_index=True)


@pytest.mark.slow
def test_dr_interval_covers_the_true_value(simulated_runs: pd.DataFrame) -> None:
    dr = simulated_runs[simulated_runs["estimator"] == "dr"]
    covered = (dr["ci_lower"] <= dr["truth"]) & (dr["truth"] <= dr["ci_upper"])
    covered_diff = (dr["diff_ci_lower"] <= dr["true_diff"]) & (
        dr["true_diff"] <= dr["diff_ci_upper"]
    )
    model = dr["policy"] != "treat_none"
    # Nominal 95%. The truth is the value on the log's own orders, so the intervals (which also
    # carry the order-to-order spread) are conservative for it; 93% of 200 logs leaves
    # 1.3 binomial SE below 95% even if they were exact.
    for policy, share in covered.groupby(dr["policy"]).mean().items():
        assert share >= 0.93, (policy, share)
    for policy, share in covered_diff[model].groupby(dr["policy"][model]).mean().items():
        assert share >= 0.93, (policy, share)


@pytest.mark.slow
def test_ipw_and_dr_are_unbiased(simulated_runs: pd.DataFrame) -> None:
    error = simulated_runs["value"] - simulated_runs["truth"]
    by = error.groupby([simulated_runs["estimator"], simulated_runs["policy"]])
    mean = by.mean()
    se: pd.Series = by.std(ddof=1) / np.sqrt(by.size())
    # Unbiased estimators: the mean error over 200 independent logs lies within 4 Monte-Carlo
    # SE of 0 (false alarm ~ 6e-5 per check). SNIPW is only consistent, so it is not checked.
    for key in [k for k in mean.index if k[0] in ("ipw", "dr")]:
        assert abs(mean[key]) < 4 * se[key], (key, mean[key], se[key])


@pytest.mark.slow
def test_paired_difference_is_tighter_than_independent(simulated_runs: pd.DataFrame) -> None:
    # Both policies are valued on the same orders, so their errors correlate; the paired SE of
    # the difference must be below the SE that ignores it, for every log.
    dr = simulated_runs[
        (simulated_runs["estimator"] == "dr") & (simulated_runs["policy"] == "model")
    ]
    none = simulated_runs[
        (simulated_runs["estimator"] == "dr") & (simulated_runs["policy"] == "treat_none")
    ]
    independent = np.sqrt(dr["se"].to_numpy() ** 2 + none["se"].to_numpy() ** 2)
    assert np.all(dr["diff_se"].to_numpy() < independent)


def test_variance_share_splits_the_paired_difference_by_rows() -> None:
    log = pd.DataFrame(
        {"arm": ["a", "b", "a", "b"], "revenue": [1.0, 0.0, 3.0, 2.0], "propensity": 0.5}
    )
    policies = {"all_a": np.array(["a"] * 4), "all_b": np.array(["b"] * 4)}
    comparison = value_policies(log, policies, estimators=("ipw",), control="b")
    diff = comparison.contributions("all_a", "ipw") - comparison.contributions("all_b", "ipw")
    squares = (diff - diff.mean()) ** 2
    rows = np.array([True, False, False, False])
    assert comparison.variance_share("all_a", "all_b", rows, "ipw") == pytest.approx(
        squares[0] / squares.sum()
    )
    assert comparison.variance_share("all_a", "all_b", ~rows, "ipw") == pytest.approx(
        1 - squares[0] / squares.sum()
    )
