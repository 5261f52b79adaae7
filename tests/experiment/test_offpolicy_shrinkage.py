"""switch_dr and dros: exact reductions, hand-computed values, and a known truth.

The truth comes from a small contextual bandit built here with numpy alone: 20 equally likely
order segments, 4 arms, revenue = order value (Gamma, mean 100) when the order is retained,
with a known retention probability per segment and arm. The logging policy is near-
deterministic like the production one: a fixed arm per segment, 10% of orders held out to
control and 5% explored uniformly, so an arm other than the rule's (or control) is logged with
probability 0.0125 (weight 80). The target policy differs from the rule on about half the
segments, and the outcome model is the truth plus a systematic error per arm plus noise. The
truth checked is the population value (exact: segments are equally likely and the order value
is independent of them with a known mean), which is what the intervals are for.

Figures: ``.venv/bin/pytest tests/experiment/test_offpolicy_shrinkage.py -q -s``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from test_offpolicy import COSTS, LOG, MU, POLICY, _se

from uplift.exceptions import ConfigError
from uplift.experiment.offpolicy import (
    DEFAULT_ESTIMATORS,
    ESTIMATORS,
    Estimator,
    compare_policies,
    policy_value,
    value_policies,
)

Z95 = 1.959963984540054
TUNED: tuple[Estimator, ...] = ("switch_dr", "dros")

# --------------------------------------------------------------------------------------------
# Hand-computed values on six orders (the log of tests/experiment/test_offpolicy.py)

# Weights w = [0, 2, 4, 2, 4, 0]; residuals y - mu[logged] = [0, 0, -1, 2, 1, 4]; direct term
# mu[policy arm] - cost = [1, 1, 1, 1, 1.5, 1].


# DR's contributions: direct + w * residual - cost = [1, 1, -3, 5, 5.5, 1], mean 1.75.
DR_LOWER, DR_UPPER = (
    1.75 - Z95 * _se([1, 1, -3, 5, 5.5, 1]),
    1.75 + Z95 * _se([1, 1, -3, 5, 5.5, 1]),
)


def test_switch_dr_known_value() -> None:
    # tau = 3 keeps the weights 2 and drops the 4s: corrections [0, 0, 0, 4, 0, 0], so the
    # contributions are [1, 1, 1, 5, 1.5, 1] (mean 1.75). The value lies in DR's interval,
    # which is therefore the interval.
    got = policy_value(LOG, POLICY, estimator="switch_dr", mu=MU, costs=COSTS, tuning=3.0)
    assert got.value == pytest.approx(1.75, abs=1e-12)
    assert got.se == pytest.approx(_se([1, 1, 1, 5, 1.5, 1]), abs=1e-12)
    assert (got.ci_lower, got.ci_upper) == pytest.approx((DR_LOWER, DR_UPPER), abs=1e-12)
    assert got.tuning == 3.0
    # tau = 0 drops every correction: the direct method, mean of [1, 1, 1, 1, 1.5, 1].
    direct = policy_value(LOG, POLICY, estimator="switch_dr", mu=MU, costs=COSTS, tuning=0.0)
    assert direct.value == pytest.approx(6.5 / 6, abs=1e-12)


def test_dros_known_value() -> None:
    # lambda = 4 shrinks w = 2 to 4 * 2 / (4 + 4) = 1 and w = 4 to 16 / 20 = 0.8: corrections
    # [0, 0, -0.8, 2, 0.8, 0], contributions [1, 1, 0.2, 3, 2.3, 1] (mean 8.5 / 6).
    got = policy_value(LOG, POLICY, estimator="dros", mu=MU, costs=COSTS, tuning=4.0)
    assert got.value == pytest.approx(8.5 / 6, abs=1e-12)
    assert got.se == pytest.approx(_se([1, 1, 0.2, 3, 2.3, 1]), abs=1e-12)
    assert (got.ci_lower, got.ci_upper) == pytest.approx((DR_LOWER, DR_UPPER), abs=1e-12)
    # lambda = 0 is the direct method too (weight-0 orders stay at 0, not 0 / 0).
    direct = policy_value(LOG, POLICY, estimator="dros", mu=MU, costs=COSTS, tuning=0.0)
    assert direct.value == pytest.approx(6.5 / 6, abs=1e-12)


@pytest.mark.parametrize("estimator", TUNED)
def test_interval_widens_to_hold_a_value_outside_drs(estimator: Estimator) -> None:
    # Every order logged arm a at propensity 0.5 (w = 2) and earned 0; mu says 5. DR's
    # contributions are 5 + 2 * (0 - 5) = -5 on every order: interval [-5, -5]. Cutting the
    # weight (tuning 0) leaves the direct method, 5, outside it: the interval is [-5, 5].
    log = pd.DataFrame({"arm": ["a"] * 3, "revenue": [0.0] * 3, "propensity": [0.5] * 3})
    mu = pd.DataFrame({"a": 5.0, "c": 0.0}, index=log.index)
    got = policy_value(log, ["a"] * 3, estimator=estimator, mu=mu, tuning=0.0)
    assert (got.value, got.se, got.ci_lower, got.ci_upper) == (5.0, 0.0, -5.0, 5.0)


@pytest.mark.parametrize("estimator", TUNED)
def test_infinite_hyperparameter_is_exactly_dr(estimator: Estimator) -> None:
    dr = policy_value(LOG, POLICY, estimator="dr", mu=MU, costs=COSTS)
    got = policy_value(LOG, POLICY, estimator=estimator, mu=MU, costs=COSTS, tuning=np.inf)
    fields = ("value", "se", "ci_lower", "ci_upper", "n")
    assert [getattr(got, f) for f in fields] == [getattr(dr, f) for f in fields]


def test_bad_input_is_rejected() -> None:
    for estimator in TUNED:
        with pytest.raises(ConfigError, match=f"'{estimator}' needs mu"):
            policy_value(LOG, POLICY, estimator=estimator)
    with pytest.raises(ConfigError, match="tuning must be a number >= 0"):
        policy_value(LOG, POLICY, estimator="dr", mu=MU, tuning=2.0)
    with pytest.raises(ConfigError, match="tuning must be a number >= 0"):
        policy_value(LOG, POLICY, estimator="dros", mu=MU, tuning=-1.0)
    with pytest.raises(ConfigError, match="tuning must be a number >= 0"):
        policy_value(LOG, POLICY, estimator="switch_dr", mu=MU, tuning=np.nan)
    comparison = value_policies(LOG, {"model": POLICY}, mu=MU, estimators=["dr"])
    with pytest.raises(ConfigError, match="estimator must be one of 'switch_dr', 'dros'"):
        comparison.tuning("model", "dr")


def test_defaults_stay_ipw_snipw_dr() -> None:
    assert DEFAULT_ESTIMATORS == ("ipw", "snipw", "dr")
    assert set(TUNED) <= set(ESTIMATORS)
    table = compare_policies(
        LOG, {"model": POLICY, "none": np.full(6, "c")}, baseline="none", mu=MU
    )
    assert tuple(table["estimator"].unique()) == DEFAULT_ESTIMATORS


# --------------------------------------------------------------------------------------------
# The synthetic world

ARMS = np.array(["control", "a", "b", "c"])
SEGMENTS, ORDERS, REPLICATIONS = 20, 5_000, 200
HOLDOUT, EXPLORE = 0.10, 0.05
MEAN_ORDER_VALUE = 100.0  # order value ~ Gamma(shape 2, scale 50)
# The outcome model's systematic error in retention probability per arm (plus cell noise):
# it overrates arms a and c, underrates b.
MODEL_ERROR = np.array([0.0, 0.04, -0.03, 0.05])

_world = np.random.default_rng(0)
RETAINED = np.clip(0.70 + _world.normal(0, 0.06, (SEGMENTS, 4)), 0.05, 0.95)
RETAINED[:, 0] -= 0.03
RULE = _world.integers(0, 4, SEGMENTS)  # the logging policy's arm per segment
TARGET = RULE.copy()
_differs = _world.random(SEGMENTS) < 0.5
TARGET[_differs] = (RULE[_differs] + _world.integers(1, 4, _differs.sum())) % 4
PROPENSITY = np.full((SEGMENTS, 4), EXPLORE / 4)
PROPENSITY[:, 0] += HOLDOUT
PROPENSITY[np.arange(SEGMENTS), RULE] += 1 - HOLDOUT - EXPLORE


def _true_value(arm_by_segment: NDArray[np.int_]) -> float:
    """Population value: segments are equally likely and the order value is independent."""
    return MEAN_ORDER_VALUE * float(RETAINED[np.arange(SEGMENTS), arm_by_segment].mean())


def _world_log(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, NDArray[np.int_]]:
    """One logged week: the log, the outcome model mu, and every order's segment."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, SEGMENTS, ORDERS)
    order_value = rng.gamma(2.0, MEAN_ORDER_VALUE / 2, ORDERS)
    probs = PROPENSITY[segment]
    arm = np.minimum((rng.random(ORDERS)[:, None] > probs.cumsum(axis=1)).sum(axis=1), 3)
    retained = rng.random(ORDERS) < RETAINED[segment, arm]
    noisy = RETAINED[segment] + MODEL_ERROR + rng.normal(0, 0.05, (ORDERS, 4))
    log = pd.DataFrame(
        {
            "arm": ARMS[arm],
            "revenue": order_value * retained,
            "propensity": probs[np.arange(ORDERS), arm],
        }
    )
    mu = pd.DataFrame(order_value[:, None] * np.clip(noisy, 0, 1), columns=list(ARMS))
    return log, mu, segment


def test_the_world_is_the_hard_case() -> None:
    log, _, segment = _world_log(1)
    w = (ARMS[TARGET[segment]] == log["arm"].to_numpy()) / log["propensity"].to_numpy()
    assert (TARGET != RULE).mean() >= 0.3  # the target differs from the rule on many orders
    assert w.max() == pytest.approx(1 / 0.0125)  # explored arms carry weight 80


@pytest.mark.parametrize("estimator", TUNED)
def test_target_equal_to_logging_is_dr(estimator: Estimator) -> None:
    # Every weight is exactly 1: nothing to shrink, so both estimators are DR.
    log, mu, segment = _world_log(2)
    logging = pd.DataFrame(PROPENSITY[segment], columns=list(ARMS))
    comparison = value_policies(log, {"logging": logging}, mu=mu, estimators=["dr", estimator])
    rows = comparison.versus("logging").drop(columns="estimator")  # dr's row, then estimator's
    assert comparison.tuning("logging", estimator) == np.inf
    pd.testing.assert_frame_equal(
        rows.iloc[[1]].reset_index(drop=True),
        rows.iloc[[0]].reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize("estimator", TUNED)
def test_chosen_hyperparameter_is_exposed(estimator: Estimator) -> None:
    log, mu, segment = _world_log(3)
    target = ARMS[TARGET[segment]]
    comparison = value_policies(log, {"target": target}, mu=mu, estimators=[estimator])
    chosen = comparison.tuning("target", estimator)
    tuned = policy_value(log, target, estimator=estimator, mu=mu)
    fixed = policy_value(log, target, estimator=estimator, mu=mu, tuning=chosen)
    assert tuned.tuning == chosen
    assert (fixed.value, fixed.ci_lower, fixed.ci_upper) == (
        tuned.value,
        tuned.ci_lower,
        tuned.ci_upper,
    )
    assert tuned.value == comparison.contributions("target", estimator).mean()


# --------------------------------------------------------------------------------------------
# Coverage of the known truth over many logs


def _replication(seed: int) -> pd.DataFrame:
    log, mu, segment = _world_log(seed)
    policies = {"target": ARMS[TARGET[segment]], "treat_none": np.full(ORDERS, "control")}
    table = value_policies(log, policies, mu=mu, estimators=("dr", *TUNED)).versus("treat_none")
    table = table[table["policy"] == "target"].set_index("estimator")
    table["seed"] = seed
    return table


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    """One row per log and estimator, with the population truth of the value and difference."""
    table = pd.concat([_replication(seed) for seed in range(100, 100 + REPLICATIONS)])
    table["truth"] = _true_value(TARGET)
    table["true_diff"] = table["truth"] - _true_value(np.zeros(SEGMENTS, dtype=int))
    return table


def _figures(runs: pd.DataFrame) -> pd.DataFrame:
    error = runs["value"] - runs["truth"]
    covered = (runs["ci_lower"] <= runs["truth"]) & (runs["truth"] <= runs["ci_upper"])
    diff_covered = (runs["diff_ci_lower"] <= runs["true_diff"]) & (
        runs["true_diff"] <= runs["diff_ci_upper"]
    )
    frame = pd.DataFrame(
        {
            "bias": error,
            "squared_error": error**2,
            "coverage": covered,
            "diff_coverage": diff_covered,
            "naive_coverage": error.abs() <= Z95 * runs["se"],  # value +- 1.96 se
            "width": runs["ci_upper"] - runs["ci_lower"],
            "diff_width": runs["diff_ci_upper"] - runs["diff_ci_lower"],
        }
    )
    figures = frame.groupby(level="estimator").mean()
    figures["rmse"] = np.sqrt(figures.pop("squared_error"))
    return figures.loc[["dr", *TUNED]]


@pytest.mark.slow
def test_shrinkage_against_the_truth(runs: pd.DataFrame) -> None:
    figures = _figures(runs)
    with pd.option_context("display.width", 150, "display.max_columns", 20, "display.precision", 3):
        print(f"\n{REPLICATIONS} logs of {ORDERS} orders; truth {runs['truth'].iloc[0]:.3f}")
        print(figures)
    dr = figures.loc["dr"]
    for estimator in TUNED:
        row = figures.loc[estimator]
        # Nominal 95% for the population value (the truth here, and what the intervals are
        # for). With 200 logs the binomial SE of a coverage near 0.95 is
        # sqrt(0.95 * 0.05 / 200) = 0.015: 0.90 is 3.2 SE below nominal, 0.99 is 2.6 SE above
        # (an interval covering more than that is wider than it needs to be).
        assert 0.90 <= row["coverage"] <= 0.99, (estimator, row["coverage"])
        assert 0.90 <= row["diff_coverage"] <= 0.99, (estimator, row["diff_coverage"])
        # Why the interval is not value +- 1.96 se (module docstring): that covers far less.
        assert row["naive_coverage"] < 0.85, (estimator, row["naive_coverage"])
        # The point of shrinking: a smaller error than DR's in this near-deterministic log.
        assert row["rmse"] <= dr["rmse"], (estimator, row["rmse"], dr["rmse"])
        # The interval is DR's, widened only when the value falls outside it, which the tuning
        # makes rare (it penalises the squared gap to DR): on average within 1% of DR's width.
        assert row["width"] <= 1.01 * dr["width"], (estimator, row["width"], dr["width"])
        assert row["diff_width"] <= 1.01 * dr["diff_width"], (estimator, row["diff_width"])


@pytest.mark.slow
def test_interval_is_drs_holding_the_value(runs: pd.DataFrame) -> None:
    # switch_dr / dros rebuild DR's contributions as their own plus the part they drop; this
    # checks that against DR computed directly, on every log, for values and differences.
    dr = runs.loc["dr"].set_index("seed")
    for estimator in TUNED:
        tuned = runs.loc[estimator].set_index("seed")
        for value, low, high in (
            ("value", "ci_lower", "ci_upper"),
            ("diff", "diff_ci_lower", "diff_ci_upper"),
        ):
            expected_low = np.minimum(tuned[value], dr[low])
            expected_high = np.maximum(tuned[value], dr[high])
            np.testing.assert_allclose(tuned[low], expected_low, rtol=0, atol=1e-9)
            np.testing.assert_allclose(tuned[high], expected_high, rtol=0, atol=1e-9)
