"""Uplift ranking metrics, calibration by bucket and PEHE: known values, references, properties."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.metrics import (
    auuc,
    calibration_by_bucket,
    qini_coefficient,
    qini_curve,
    sqrt_pehe,
    uplift_at_k,
    uplift_curve,
    uplift_metrics_by_arm,
)

# Floating-point slack for quantities that are equal in exact arithmetic but summed in a
# different order (permutations, weights vs duplicated rows): sums of < 100 terms of size <= 100.
EXACT = 1e-9

# The hand-computed example (8 rows, two tie groups). Groups by decreasing score:
# {0.9}, {0.8, 0.8}, {0.5}, {0.3, 0.3}, {0.2}, {0.1}; worked out in the comments of each test.
SCORE = np.array([0.9, 0.8, 0.8, 0.5, 0.3, 0.3, 0.2, 0.1])
TREATED = np.array([1, 0, 1, 1, 0, 1, 0, 0])
Y = np.array([1, 0, 1, 0, 1, 1, 0, 1])


def test_uplift_curve_known_values() -> None:
    curve = uplift_curve(SCORE, Y, TREATED)
    # Cumulative (treated mean, control mean) per group: (1, -), (1, 0), (2/3, 0), (3/4, 1/2),
    # (3/4, 1/3), (3/4, 1/2); value = (difference) * share, 0 where a group is still empty.
    np.testing.assert_allclose(curve["share"], [0, 1 / 8, 3 / 8, 1 / 2, 3 / 4, 7 / 8, 1])
    np.testing.assert_allclose(
        curve["top_uplift"], [np.nan, np.nan, 1, 2 / 3, 1 / 4, 5 / 12, 1 / 4]
    )
    np.testing.assert_allclose(curve["value"], [0, 0, 3 / 8, 1 / 3, 3 / 16, 35 / 96, 1 / 4])
    assert curve["n_treated"].tolist() == [0, 1, 2, 3, 4, 4, 4]
    assert curve["n_control"].tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert curve["threshold"].iloc[1:].tolist() == [0.9, 0.8, 0.5, 0.3, 0.2, 0.1]


def test_qini_curve_known_values() -> None:
    # Radcliffe's Y_t - Y_c * N_t / N_c per group: 1, 2, 2, 2, 5/3, 1; divided by N_t = 4.
    curve = qini_curve(SCORE, Y, TREATED)
    np.testing.assert_allclose(curve["value"], [0, 0, 1 / 2, 1 / 2, 1 / 4, 5 / 12, 1 / 4])


def test_areas_known_values() -> None:
    # Trapezoids under the curves above: 11/48 (uplift) and 29/96 (Qini); the random line
    # from (0, 0) to (1, 1/4) has area 1/8.
    assert auuc(SCORE, Y, TREATED) == pytest.approx(11 / 48 - 1 / 8, abs=EXACT)
    assert qini_coefficient(SCORE, Y, TREATED) == pytest.approx(29 / 96 - 1 / 8, abs=EXACT)


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0.3, 1.0), (0.375, 1.0), (0.4, 2 / 3), (0.5, 2 / 3), (0.6, 1 / 4), (1.0, 1 / 4)],
)
def test_uplift_at_k_known_values(k: float, expected: float) -> None:
    # The top is the first whole group whose cumulative share reaches k (shares 1/8, 3/8,
    # 1/2, 3/4, 7/8, 1).
    assert uplift_at_k(SCORE, Y, TREATED, k) == pytest.approx(expected, abs=EXACT)


def test_uplift_at_k_is_nan_without_control_in_top() -> None:
    assert np.isnan(uplift_at_k(SCORE, Y, TREATED, 0.1))


def test_weights_equal_duplicated_rows() -> None:
    # An integer weight is the same as repeating the row: Hajek means and shares both agree.
    weights = np.array([1, 2, 1, 3, 1, 2, 1, 1])
    repeat = np.repeat(np.arange(8), weights)
    weighted = uplift_curve(SCORE, Y, TREATED, weights)
    repeated = uplift_curve(SCORE[repeat], Y[repeat], TREATED[repeat])
    np.testing.assert_allclose(weighted["value"], repeated["value"], atol=EXACT)
    np.testing.assert_allclose(weighted["share"], repeated["share"], atol=EXACT)
    assert qini_coefficient(SCORE, Y, TREATED, weights) == pytest.approx(
        qini_coefficient(SCORE[repeat], Y[repeat], TREATED[repeat]), abs=EXACT
    )


# --------------------------------------------------------------------------------------------
# Slow, obviously correct references


def _reference_qini(
    score: NDArray[np.float64], y: NDArray[np.float64], treated: NDArray[np.bool_]
) -> list[float]:
    """Radcliffe's Qini per distinct threshold, by an explicit loop over rows."""
    n_treated_all = sum(1 for t in treated if t)
    values = []
    for threshold in sorted(set(score.tolist()), reverse=True):
        yt = yc = nt = nc = 0.0
        for s, out, t in zip(score, y, treated, strict=True):
            if s >= threshold:
                if t:
                    yt, nt = yt + out, nt + 1
                else:
                    yc, nc = yc + out, nc + 1
        qini = (yt - yc * nt / nc) if nt and nc else 0.0
        values.append(qini / n_treated_all)
    return values


def _reference_auuc(
    score: NDArray[np.float64], y: NDArray[np.float64], treated: NDArray[np.bool_]
) -> float:
    """Uplift-curve area above the random line, by loops over thresholds and trapezoids."""
    n = len(score)
    points = [(0.0, 0.0)]
    for threshold in sorted(set(score.tolist()), reverse=True):
        top = [i for i in range(n) if score[i] >= threshold]
        yt = [y[i] for i in top if treated[i]]
        yc = [y[i] for i in top if not treated[i]]
        diff = (sum(yt) / len(yt) - sum(yc) / len(yc)) if yt and yc else 0.0
        points.append((len(top) / n, diff * len(top) / n))
    area = sum((x1 - x0) * (v0 + v1) / 2 for (x0, v0), (x1, v1) in pairwise(points))
    return area - points[-1][1] / 2


@pytest.mark.parametrize("seed", range(5))
def test_curves_match_loop_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    score = rng.integers(0, 40, n).astype(float)  # many ties
    treated = rng.random(n) < 0.4
    y = (rng.random(n) < 0.5 + 0.2 * treated * (score > 20)).astype(float)
    np.testing.assert_allclose(
        qini_curve(score, y, treated)["value"].iloc[1:], _reference_qini(score, y, treated)
    )
    assert auuc(score, y, treated) == pytest.approx(_reference_auuc(score, y, treated), abs=EXACT)


# --------------------------------------------------------------------------------------------
# Properties

METRICS = [auuc, qini_coefficient]


@st.composite
def scored_logs(draw: st.DrawFn) -> tuple[NDArray[np.float64], ...]:
    """Integer scores with ties, outcomes, a treatment flag with both groups, positive weights."""
    n = draw(st.integers(2, 40))
    score = np.array(draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n)), dtype=float)
    y = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=float)
    treated = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    treated[0], treated[1] = True, False
    weights = np.array(draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))) / 4
    return score, y, treated.astype(float), weights


@given(scored_logs(), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_areas_invariant_to_row_permutation(
    data: tuple[NDArray[np.float64], ...], seed: int
) -> None:
    score, y, treated, weights = data
    perm = np.random.default_rng(seed).permutation(len(score))
    for metric in METRICS:
        assert metric(score[perm], y[perm], treated[perm]) == pytest.approx(
            metric(score, y, treated), abs=EXACT
        )
        assert metric(score[perm], y[perm], treated[perm], weights[perm]) == pytest.approx(
            metric(score, y, treated, weights), abs=EXACT
        )


@given(scored_logs())
@settings(max_examples=60, deadline=None)
def test_areas_invariant_to_increasing_transforms(data: tuple[NDArray[np.float64], ...]) -> None:
    score, y, treated, weights = data
    # Exact in floating point for |score| <= 30, so ties stay ties and order stays order.
    transforms = [score**3 + 2 * score + 7, np.unique(score, return_inverse=True)[1] * 0.5]
    for metric in METRICS:
        for transformed in transforms:
            assert metric(transformed, y, treated, weights) == metric(score, y, treated, weights)


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(-5, 5)), min_size=1),
    st.lists(st.integers(1, 9), min_size=1),
)
@settings(max_examples=80, deadline=None)
def test_true_effect_ordering_beats_any_ordering(
    orders: list[tuple[int, int, int]], raw_weights: list[int]
) -> None:
    # With both potential outcomes observed for every order (each order appears once treated,
    # once control, with the same score and weight), the uplift and Qini curves are the
    # cumulative sum of true effects: ranking by the true effect maximises both areas.
    y0, y1, score = (np.array(col, dtype=float) for col in zip(*orders, strict=True))
    weights = np.resize(np.array(raw_weights, dtype=float), len(orders))
    both = (np.r_[y1, y0], np.r_[np.ones(len(orders)), np.zeros(len(orders))])
    for metric in METRICS:
        best = metric(np.r_[y1 - y0, y1 - y0], both[0], both[1], np.r_[weights, weights])
        other = metric(np.r_[score, score], both[0], both[1], np.r_[weights, weights])
        assert best >= other - EXACT


@given(scored_logs())
@settings(max_examples=60, deadline=None)
def test_uplift_at_full_share_is_difference_in_means(data: tuple[NDArray[np.float64], ...]) -> None:
    score, y, treated, weights = data
    t = treated == 1
    plain = y[t].mean() - y[~t].mean()
    weighted = np.average(y[t], weights=weights[t]) - np.average(y[~t], weights=weights[~t])
    assert uplift_at_k(score, y, treated, 1.0) == pytest.approx(plain, abs=EXACT)
    assert uplift_at_k(score, y, treated, 1.0, weights) == pytest.approx(weighted, abs=EXACT)


def _experiment(
    rng: np.random.Generator,
    n: int,
    propensity: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """Bernoulli outcomes with known uplift; returns (true uplift, y, treated, baseline)."""
    baseline = rng.uniform(0.3, 0.9, n)
    tau = rng.uniform(-0.05, 0.1, n) * (baseline < 0.8) + 0.1 * baseline
    p_treat = np.full(n, 0.5) if propensity is None else propensity(baseline)
    treated = rng.random(n) < p_treat
    y = (rng.random(n) < baseline + treated * tau).astype(float)
    return tau, y, treated, p_treat


def test_random_ranking_scores_about_zero() -> None:
    rng = np.random.default_rng(7)
    _, y, treated, _ = _experiment(rng, 2000)
    areas = np.array(
        [[auuc(s, y, treated), qini_coefficient(s, y, treated)] for s in rng.random((300, 2000))]
    )
    # Over random rankings of one log the mean area is 0 up to the ratio-of-means bias near the
    # top of the ranking (first tens of orders), which is far below the sampling spread; 4 SE
    # of the mean over 300 rankings bounds the Monte-Carlo error (false alarm ~ 1e-4).
    mean, se = areas.mean(axis=0), areas.std(axis=0, ddof=1) / np.sqrt(len(areas))
    assert np.all(np.abs(mean) < 4 * se), (mean, se)


def test_areas_recover_their_population_value() -> None:
    # The population value of a score's area is the same area computed with both potential
    # outcomes known (each order once treated with its true uplift as outcome, once control
    # with 0). The measured areas must agree with it on average over simulated logs.
    rng = np.random.default_rng(17)
    errors = []
    for _ in range(60):
        tau, y, treated, _ = _experiment(rng, 4000)
        score = tau + rng.normal(0, 0.03, tau.size)  # an imperfect model
        both = (
            np.r_[score, score],
            np.r_[tau, np.zeros_like(tau)],
            np.r_[np.ones(4000), np.zeros(4000)],
        )
        errors.append([m(score, y, treated) - m(*both) for m in METRICS])
    error = np.array(errors)
    mean, se = error.mean(axis=0), error.std(axis=0, ddof=1) / np.sqrt(len(error))
    # 4 SE of the mean over 60 logs: a false alarm rate ~ 1e-4 if the metric is unbiased.
    assert np.all(np.abs(mean) < 4 * se), (mean, se)
    # The population areas of this score are clearly positive (it ranks by the true uplift
    # plus noise), so a sign flip in the curves could not pass the check above.
    assert auuc(*both) > 8 * se[0]


def test_weights_remove_bias_of_non_uniform_log() -> None:
    # Treatment probability rises with the baseline retention, so the raw difference in means
    # is confounded; inverse-propensity weights must recover the true mean uplift.
    rng = np.random.default_rng(11)
    errors = []
    for _ in range(100):
        tau, y, treated, p = _experiment(rng, 4000, lambda b: 0.1 + 0.8 * (b - 0.3) / 0.6)
        w = np.where(treated, 1 / p, 1 / (1 - p))
        errors.append(
            [
                uplift_at_k(tau, y, treated, 1.0, w) - tau.mean(),
                uplift_at_k(tau, y, treated, 1.0) - tau.mean(),
            ]
        )
    error = np.array(errors)
    mean, se = error.mean(axis=0), error.std(axis=0, ddof=1) / np.sqrt(len(error))
    # Weighted: unbiased, so within 4 SE of zero over 100 logs. Unweighted: the confounding
    # shifts it by about +0.1 (baseline gap between arms), far outside that band.
    assert abs(mean[0]) < 4 * se[0]
    assert mean[1] > 0.05


# --------------------------------------------------------------------------------------------
# Multi-arm helper


def test_uplift_metrics_by_arm_scores_each_arm_against_control() -> None:
    rng = np.random.default_rng(3)
    n = 300
    log = pd.DataFrame(
        {
            "arm": rng.choice(["control", "sms", "call"], n),
            "retained": rng.integers(0, 2, n),
            "propensity": rng.uniform(0.2, 0.6, n),
        }
    )
    effects = pd.DataFrame({"sms": rng.random(n), "call": rng.random(n)})
    table = uplift_metrics_by_arm(effects, log, ks=(0.1, 0.25))
    assert list(table.columns) == [
        "arm",
        "n_treated",
        "n_control",
        "ate",
        "auuc",
        "qini_coefficient",
        "uplift_at_10",
        "uplift_at_25",
    ]
    for arm in ("sms", "call"):
        rows = log["arm"].isin([arm, "control"]).to_numpy()
        args = (
            effects[arm][rows],
            log["retained"][rows],
            log["arm"][rows] == arm,
        )
        w = 1 / log["propensity"][rows]
        row = table.set_index("arm").loc[arm]
        assert row["n_treated"] == (log["arm"] == arm).sum()
        assert row["auuc"] == pytest.approx(auuc(*args, w), abs=EXACT)
        assert row["qini_coefficient"] == pytest.approx(qini_coefficient(*args, w), abs=EXACT)
        assert row["uplift_at_25"] == pytest.approx(uplift_at_k(*args, 0.25, w), abs=EXACT)
        assert row["ate"] == pytest.approx(uplift_at_k(*args, 1.0, w), abs=EXACT)


def test_uplift_metrics_by_arm_rejects_misaligned_effects() -> None:
    log = pd.DataFrame({"arm": ["control", "sms"], "retained": [1, 0]})
    effects = pd.DataFrame({"sms": [0.1, 0.2]}, index=[5, 6])
    with pytest.raises(SchemaError, match="indexed like the log"):
        uplift_metrics_by_arm(effects, log)
    with pytest.raises(SchemaError, match="no column for arm 'sms'"):
        uplift_metrics_by_arm(effects.reset_index(drop=True).rename(columns=str.upper), log)
    with pytest.raises(SchemaError, match=r"control arm 'ctrl'; arms: \['control', 'sms'\]"):
        uplift_metrics_by_arm(effects.reset_index(drop=True), log, control="ctrl")


# --------------------------------------------------------------------------------------------
# Calibration


def test_calibration_known_values() -> None:
    predicted = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    treated = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    result = calibration_by_bucket(predicted, y, treated, buckets=2)
    table = result.table
    # Bucket 0: treated [1, 0], control [0, 0]: 0.5 - 0 with se sqrt(0.5 / 2 + 0) = 0.5.
    # Bucket 1: treated [1, 1], control [1, 0]: 1 - 0.5 with se sqrt(0 + 0.5 / 2) = 0.5.
    np.testing.assert_allclose(table["predicted"], [0.15, 0.55])
    np.testing.assert_allclose(table["measured"], [0.5, 0.5])
    np.testing.assert_allclose(table["se"], [0.5, 0.5])
    np.testing.assert_allclose(table["ci_lower"], 0.5 - 1.959963984540054 * 0.5)
    assert table["n_treated"].tolist() == [2, 2]
    assert table["covers"].all()
    assert result.coverage == 1.0
    # Equal measured values: slope 0, intercept 0.5; sxx = 4 * 0.2^2 * 2 = 0.32.
    assert result.slope == pytest.approx(0.0, abs=EXACT)
    assert result.slope_se == pytest.approx(np.sqrt(1 / 0.32))
    assert result.intercept == pytest.approx(0.5)
    # chi2 = (0.35 / 0.5)^2 + (0.05 / 0.5)^2 = 0.5 on 2 df: p = exp(-0.25).
    assert result.chi2 == pytest.approx(0.5)
    assert result.chi2_pvalue == pytest.approx(np.exp(-0.25))


def test_calibration_single_bucket_is_the_overall_difference() -> None:
    # Treated outcomes [1, 1, 0, 1], control [0, 1, 0, 1]: 3/4 - 1/2. Sample variances 1/4 and
    # 1/3, so the Welch se is sqrt(1/16 + 1/12).
    table = calibration_by_bucket(np.arange(8.0), Y, TREATED, buckets=1).table
    assert len(table) == 1
    assert table["measured"].iloc[0] == pytest.approx(0.25)
    assert table["se"].iloc[0] == pytest.approx(np.sqrt(1 / 16 + 1 / 12))


def test_calibration_constant_weights_change_nothing() -> None:
    rng = np.random.default_rng(5)
    tau, y, treated, _ = _experiment(rng, 1000)
    plain = calibration_by_bucket(tau, y, treated)
    weighted = calibration_by_bucket(tau, y, treated, weights=np.full(1000, 3.0))
    pd.testing.assert_frame_equal(plain.table, weighted.table, atol=EXACT, rtol=0)


def test_calibration_recovers_a_calibrated_predictor() -> None:
    rng = np.random.default_rng(2024)
    runs = [calibration_by_bucket(*_experiment(rng, 4000)[:3]) for _ in range(100)]
    coverage = np.mean([c.table["covers"].mean() for c in runs])
    # 1000 bucket intervals (independent rows): binomial SE of the coverage 0.007 around 0.95,
    # normal-approximation error at ~200 orders per arm and bucket is below 0.01; +-0.03 is
    # over 4 SE.
    assert coverage == pytest.approx(0.95, abs=0.03)
    # Slope 1 within 4 of its own SEs on average over runs (SE of the mean slope = se / 10).
    slopes = np.array([c.slope for c in runs])
    assert abs(slopes.mean() - 1) < 4 * slopes.std(ddof=1) / np.sqrt(len(slopes))
    # The chi-squared p-values of a calibrated model are roughly uniform: few below 0.05.
    assert np.mean([c.chi2_pvalue < 0.05 for c in runs]) < 0.12


def test_calibration_flags_an_overconfident_predictor() -> None:
    rng = np.random.default_rng(99)
    runs = []
    for _ in range(20):
        tau, y, treated, _ = _experiment(rng, 4000)
        runs.append(calibration_by_bucket(2 * tau + 0.05, y, treated))
    # Predictions doubled and shifted: slope about 0.5, and most intervals miss.
    assert np.mean([c.slope for c in runs]) == pytest.approx(0.5, abs=0.1)
    assert np.mean([c.coverage for c in runs]) < 0.5


def test_calibration_with_weights_on_a_non_uniform_log() -> None:
    rng = np.random.default_rng(31)
    covered: dict[str, list[bool]] = {"weighted": [], "plain": []}
    for _ in range(60):
        tau, y, treated, p = _experiment(rng, 4000, lambda b: 0.1 + 0.8 * (b - 0.3) / 0.6)
        w = np.where(treated, 1 / p, 1 / (1 - p))
        covered["weighted"].extend(
            calibration_by_bucket(tau, y, treated, weights=w).table["covers"]
        )
        covered["plain"].extend(calibration_by_bucket(tau, y, treated).table["covers"])
    # 600 intervals: binomial SE 0.009; the sandwich interval with weights 1.1-10 is a bit
    # less exact than Welch's, so +-0.04 (over 4 SE). Unweighted, confounding breaks coverage.
    assert np.mean(covered["weighted"]) == pytest.approx(0.95, abs=0.04)
    assert np.mean(covered["plain"]) < 0.6


def test_calibration_keeps_ties_in_one_bucket() -> None:
    predicted = np.r_[np.zeros(60), np.linspace(0.1, 1, 40)]
    treated = np.tile([0, 1], 50)
    y = np.repeat([1, 0, 0, 1], 25)
    result = calibration_by_bucket(predicted, y, treated, buckets=10)
    # The 60 tied zeros fill buckets 0-5 on their own, so one bucket holds them all.
    first = result.table.iloc[0]
    assert first["n_treated"] + first["n_control"] == 60
    assert len(result.table) == 5
    assert result.table["bucket"].tolist() == [0, 1, 2, 3, 4]


def test_calibration_without_any_interval_has_nan_summary() -> None:
    # Every outcome equal: all standard errors are 0, so no bucket can be judged.
    result = calibration_by_bucket(np.arange(8.0), np.ones(8), np.tile([0, 1], 4), buckets=2)
    assert result.table["se"].tolist() == [0.0, 0.0]
    assert np.isnan(result.coverage)
    assert np.isnan(result.slope)
    assert result.chi2_df == 0


# --------------------------------------------------------------------------------------------
# PEHE and input errors


def test_sqrt_pehe_known_value() -> None:
    assert sqrt_pehe([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == pytest.approx(np.sqrt(5 / 3))
    assert sqrt_pehe(np.ones((2, 3)), np.zeros((2, 3))) == 1.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: auuc([1, 2], [1, 0, 1], [1, 0]), SchemaError, "y has 3 values"),
        (lambda: auuc([1, 2], [1, 0], [1, 1]), SchemaError, "at least one treated and one control"),
        (lambda: auuc([1, 2], [1, np.nan], [1, 0]), SchemaError, "NaN or infinite at 1 row"),
        (lambda: auuc([1, 2], [1, 0], [1, 2]), SchemaError, "is_treated must be 0/1"),
        (lambda: auuc([1, 2], [1, 0], [1, 0], [1, 0]), SchemaError, "weights must be > 0"),
        (lambda: auuc([], [], []), SchemaError, "score is empty"),
        (lambda: uplift_at_k([1, 2], [1, 0], [1, 0], 0), ConfigError, r"k must be a share"),
        (lambda: calibration_by_bucket([1, 2], [1, 0], [1, 0], 0), ConfigError, "buckets"),
        (lambda: sqrt_pehe([1, 2], [1]), SchemaError, "same non-empty shape"),
        (lambda: sqrt_pehe([1, np.inf], [1, 2]), SchemaError, "predicted must be finite"),
    ],
)
def test_bad_input_is_rejected(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]
