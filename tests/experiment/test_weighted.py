"""Weighted means and ratios with sandwich variances: known values, a residual-form reference,
Welch's variance for equal weights, and the ratio case."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uplift.experiment.weighted import estimates, ratio_estimate, sufficient_statistics

# Five rows of one group: weights 1, 1, 2, 2, 4 (propensities 1, 1, 1/2, 1/2, 1/4).
FIVE = pd.DataFrame(
    {
        "g": ["a"] * 5,
        "propensity": [1.0, 1.0, 0.5, 0.5, 0.25],
        "y": [0.0, 1.0, 1.0, 0.0, 1.0],
        "s": [2.0, 1.0, 1.0, 0.5, 0.5],
    }
)


def _stats(frame: pd.DataFrame, scale: str | None = None) -> pd.DataFrame:
    moments = sufficient_statistics(frame, ["g"], {"y": "y"}, scale=scale)
    return estimates(moments, ["y"]).set_index("g")


def _reference(frame: pd.DataFrame, scale: bool) -> pd.DataFrame:
    """Obviously correct, slow: per group, the ratio and the residual form of its variance."""
    rows = {}
    for group, part in frame.groupby("g"):
        w = 1 / part["propensity"].to_numpy()
        y = part["y"].to_numpy()
        s = part["s"].to_numpy() if scale else np.ones(len(part))
        ratio = math.fsum(w * y) / math.fsum(w * s)
        n = len(part)
        squares = math.fsum(w**2 * (y - ratio * s) ** 2)
        var = squares / math.fsum(w * s) ** 2 * n / (n - 1) if n > 1 else np.nan
        rows[group] = (n, ratio, var)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["n", "mean_y", "var_y"])


def _random_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 600
    # Group sizes from 1 to ~60, with a few forced singletons.
    groups = np.r_[rng.integers(0, 25, n - 3), [100, 101, 102]]
    return pd.DataFrame(
        {
            "g": groups,
            "propensity": rng.uniform(0.05, 0.95, n),
            "y": rng.gamma(2.0, 30.0, n) * (rng.random(n) < 0.8),
            "s": rng.uniform(10.0, 200.0, n),
        }
    )


def test_five_rows_known_mean() -> None:
    stats = _stats(FIVE).iloc[0]
    # sum w = 10, sum w^2 = 26, sum w y = 7, sum w^2 y = sum w^2 y^2 = 1 + 4 + 16 = 21.
    assert stats[["n", "sw", "sw2", "sw_y", "sw2_y", "sw2y2_y"]].tolist() == [5, 10, 26, 7, 21, 21]
    # Mean 0.7; residuals -0.7, 0.3, 0.3, -0.7, 0.3 weigh in with w^2 = 1, 1, 4, 4, 16:
    # 0.49 + 0.09 + 0.36 + 1.96 + 1.44 = 4.34, over 10^2, times 5 / 4 = 0.05425.
    assert stats["mean_y"] == pytest.approx(0.7, rel=1e-15)
    assert stats["var_y"] == pytest.approx(0.05425, rel=1e-13)


def test_five_rows_known_ratio() -> None:
    stats = _stats(FIVE, scale="s").iloc[0]
    # sum w s = 2 + 1 + 2 + 1 + 2 = 8, so the ratio is 7 / 8; sum w^2 s^2 = 4 + 1 + 4 + 1 + 4.
    assert stats[["n", "sw", "sw2", "sw_y"]].tolist() == [5, 8, 14, 7]
    # Residuals y - 7/8 s: -1.75, 0.125, 0.125, -0.4375, 0.5625; sum w^2 r^2 = 287 / 32,
    # over 8^2, times 5 / 4 = 1435 / 8192.
    assert stats["mean_y"] == 7 / 8
    assert stats["var_y"] == pytest.approx(1435 / 8192, rel=1e-13)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scale", [False, True])
def test_expanded_moments_equal_the_residual_form(seed: int, scale: bool) -> None:
    frame = _random_frame(seed)
    mine = _stats(frame, scale="s" if scale else None)
    expected = _reference(frame, scale)
    assert mine.index.tolist() == expected.index.tolist()  # sorted by group
    assert mine["n"].tolist() == expected["n"].tolist()
    np.testing.assert_allclose(mine["mean_y"], expected["mean_y"], rtol=1e-13)
    # NaN exactly where a group has a single row.
    np.testing.assert_array_equal(np.isnan(mine["var_y"]), expected["n"] == 1)
    np.testing.assert_allclose(mine["var_y"], expected["var_y"], rtol=1e-12)


def test_equal_weights_give_welch() -> None:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {"g": rng.integers(0, 6, 300), "propensity": 0.3, "y": rng.normal(50.0, 20.0, 300)}
    )
    stats = _stats(frame)
    by = frame.groupby("g")["y"]
    np.testing.assert_allclose(stats["mean_y"], by.mean(), rtol=1e-13)
    np.testing.assert_allclose(stats["var_y"], by.var(ddof=1) / by.size(), rtol=1e-12)


def test_scale_one_is_the_mean() -> None:
    frame = _random_frame(11)
    mean = _stats(frame)
    ratio = _stats(frame.assign(s=1.0), scale="s")
    pd.testing.assert_frame_equal(ratio, mean)


def test_ratio_is_the_mean_of_y_over_s_weighted_by_w_s() -> None:
    # sum(w y) / sum(w s) is the mean of z = y / s under weights v = w s, and
    # sum(v^2 (z - r)^2) = sum(w^2 (y - r s)^2): the same estimate and variance.
    frame = _random_frame(3)
    ratio = _stats(frame, scale="s")
    as_mean = frame.assign(y=frame["y"] / frame["s"], propensity=frame["propensity"] / frame["s"])
    np.testing.assert_allclose(_stats(as_mean)["mean_y"], ratio["mean_y"], rtol=1e-13)
    np.testing.assert_allclose(_stats(as_mean)["var_y"], ratio["var_y"], rtol=1e-12)


def test_single_rows_have_no_variance() -> None:
    ratio, var = ratio_estimate(
        n=[1, 2],
        sum_ws=[2.0, 2.0],
        sum_wy=[6.0, 1.0],
        sum_w2y2=[36.0, 1.0],
        sum_w2ys=[18.0, 1.0],
        sum_w2s2=[4.0, 2.0],
    )
    assert ratio.tolist() == [3.0, 0.5]
    # Group 2 is y = 1, 0 with unit weights: s^2 / n = 0.5 / 2.
    assert np.isnan(var[0])
    assert var[1] == 0.25


def test_constant_outcomes_have_zero_variance() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"g": 0, "propensity": rng.uniform(0.1, 0.9, 50), "y": 1.0})
    # A 0/1 outcome that never varies: sum(w y) is sum(w) exactly, so the variance is exactly 0.
    assert _stats(frame)["var_y"].tolist() == [0.0]
    assert _stats(frame.assign(y=0.0))["var_y"].tolist() == [0.0]
    # Any other constant: sum(w y) / sum(w) is off by an ulp and the expanded sum of squares
    # cancels to rounding noise of order eps * y^2, never below 0.
    var = _stats(frame.assign(y=37.3))["var_y"].iloc[0]
    assert 0.0 <= var < 1e-14 * 37.3**2


def test_groups_by_several_keys_with_extra_aggregates() -> None:
    frame = pd.DataFrame(
        {
            "segment": ["b", "a", "b", "a", "b"],
            "arm": ["x", "y", "x", "x", "y"],
            "propensity": [0.5, 0.25, 0.5, 0.5, 0.2],
            "retained": [1, 0, 0, 1, 1],
        }
    )
    moments = sufficient_statistics(
        frame,
        ["segment", "arm"],
        {"cancel": "1.0 - retained"},
        extra={"propensity_min": "min(propensity)"},
    )
    assert moments[["segment", "arm"]].values.tolist() == [
        ["a", "x"],
        ["a", "y"],
        ["b", "x"],
        ["b", "y"],
    ]
    assert moments["n"].tolist() == [1, 1, 2, 1]
    assert moments["sw_cancel"].tolist() == [0.0, 4.0, 2.0, 0.0]
    assert moments["propensity_min"].tolist() == [0.5, 0.25, 0.5, 0.2]
