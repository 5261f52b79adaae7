"""A training sample drawn on Spark: stratified by arm and week, weights carried into the
propensities, so that weighted estimates on the sample stand for the whole log.

The log is built so that a mistake would show: one week is ten times the other and cancels
six times less, so the strata are sampled at very different fractions, and a sample weighted
without them would read out the wrong week's rates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from uplift.data.log import ExperimentLog, iso_week
from uplift.spark.sample import (
    DEFAULT_SAMPLE_ORDERS,
    TrainingSample,
    sample_log,
    stratum_fractions,
)
from uplift.spark.session import quiet_conversions

# The sample and the log agree within this many standard errors of the difference (below).
Z = 4.0
ARMS = np.array(["control", "rescue", "expedite"])


def _log(seed: int = 5) -> pd.DataFrame:
    """Two ISO weeks (150,000 and 15,000 orders) with cancel rates 5% and 30%; arms logged by
    a policy whose propensities depend on a feature (0.2 to 0.6)."""
    rng = np.random.default_rng(seed)
    sizes = {"2026-09-28": 150_000, "2026-10-05": 15_000}
    parts = []
    for week, (monday, n) in enumerate(sizes.items()):
        x = rng.random(n) < 0.5
        shares = np.where(x[:, None], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1])
        arm = (rng.random(n)[:, None] > shares.cumsum(axis=1)).sum(axis=1)
        rate = (0.05 if week == 0 else 0.30) - 0.02 * (arm > 0)
        seconds = rng.integers(0, 7 * 86_400, n)
        parts.append(
            pd.DataFrame(
                {
                    "order_id": np.arange(n) + week * 1_000_000,
                    "arm": ARMS[arm],
                    "cancelled": (rng.random(n) < rate).astype(np.int64),
                    "propensity": shares[np.arange(n), arm],
                    "x": x.astype(np.int64),
                    "assigned_at": pd.Timestamp(monday) + pd.to_timedelta(seconds, unit="s"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return _log()


@pytest.fixture(scope="module")
def drawn(spark: SparkSession, full: pd.DataFrame) -> TrainingSample:
    with quiet_conversions():
        frame = spark.createDataFrame(full)
    return sample_log(frame, 30_000)


def _hajek(frame: pd.DataFrame, weight: np.ndarray) -> pd.Series:
    """Inverse-propensity-weighted (Hajek) cancel rate per arm."""
    w = pd.Series(weight, index=frame.index)
    return (w * frame["cancelled"]).groupby(frame["arm"]).sum() / w.groupby(frame["arm"]).sum()


def test_weighted_arm_rates_of_the_sample_are_the_logs(
    full: pd.DataFrame, drawn: TrainingSample
) -> None:
    sample, strata = drawn.frame, drawn.strata
    assert set(sample.columns) == set(full.columns)
    truth = _hajek(full, 1 / full["propensity"].to_numpy())
    estimate = _hajek(sample, 1 / sample["propensity"].to_numpy())
    # Each order is drawn independently with its stratum's fraction f (a Bernoulli draw by
    # hash), so the linearised sampling variance of the difference of the two Hajek rates is
    #     sum over the log's orders of (1 - f) / f * (w (y - m))^2 / W^2,   w = 1 / propensity.
    week = iso_week(full["assigned_at"])
    key = strata.set_index(["arm", "week"])["fraction"]
    f = key.reindex(pd.MultiIndex.from_arrays([full["arm"], week])).to_numpy()
    w = 1 / full["propensity"].to_numpy()
    residual = w * (full["cancelled"].to_numpy() - full["arm"].map(truth).to_numpy())
    by_arm = full["arm"].to_numpy()
    for arm in ARMS:
        rows = by_arm == arm
        se = np.sqrt(((1 - f[rows]) / f[rows] * residual[rows] ** 2).sum()) / w[rows].sum()
        assert abs(estimate[arm] - truth[arm]) <= Z * se, arm
        # Without the fractions the small, high-cancelling week would weigh ten times too
        # much: the test would catch a sample that forgot them.
        naive = _hajek(sample, 1 / (sample["propensity"] / _fractions(sample, strata)))
        assert abs(naive[arm] - truth[arm]) > Z * se, arm


def _fractions(sample: pd.DataFrame, strata: pd.DataFrame) -> np.ndarray:
    key = strata.set_index(["arm", "week"])["fraction"]
    index = pd.MultiIndex.from_arrays([sample["arm"], iso_week(sample["assigned_at"])])
    return key.reindex(index).to_numpy()


def test_propensities_are_the_logs_times_the_sampling_fraction(
    full: pd.DataFrame, drawn: TrainingSample
) -> None:
    sample, strata = drawn.frame, drawn.strata
    assert drawn.log_orders == len(full)
    logged = full.set_index("order_id").loc[sample["order_id"], "propensity"].to_numpy()
    np.testing.assert_allclose(sample["propensity"], logged * _fractions(sample, strata))
    # Horvitz-Thompson: each stratum's sampled orders / fraction is its size in the log,
    # within sampling error (binomial: sd sqrt(N (1 - f) / f) in orders).
    n, f = strata["orders"], strata["fraction"]
    assert (np.abs(strata["sampled"] / f - n) <= Z * np.sqrt(n * (1 - f) / f) + 1e-9).all()
    assert strata["sampled"].sum() == len(sample)
    assert abs(len(sample) - 30_000) <= Z * np.sqrt(30_000)
    # Small strata are kept whole, large ones cut to one level; the log reads as a log.
    assert (strata.loc[strata["orders"] < 5_000, "fraction"] == 1).all()
    ExperimentLog.from_frame(sample)


def test_fractions_fill_the_strata_to_one_level() -> None:
    strata = pd.DataFrame(
        {"arm": list("abcd"), "_week": "all", "orders": [10, 100, 1000, 5], "smallest": 0.5}
    )
    out = stratum_fractions(strata, 215)
    kept = (out["orders"] * out["fraction"]).to_numpy()
    np.testing.assert_allclose(kept, [10, 100, 100, 5])  # level 100: 10 + 100 + 100 + 5
    tiny = stratum_fractions(strata.assign(smallest=1e-3), 20)
    assert (tiny["fraction"] * 1e-3 >= 1e-4).all()  # no propensity below read_log's floor
    assert tiny["raised"].any()


def test_a_log_below_the_default_size_is_kept_whole(
    spark: SparkSession, full: pd.DataFrame
) -> None:
    """The default sample holds DEFAULT_SAMPLE_ORDERS (the learning curve's knee); a smaller
    log is kept whole, every propensity as logged."""
    small = full.iloc[::40].reset_index(drop=True)
    with quiet_conversions():
        frame = spark.createDataFrame(small)
    drawn = sample_log(frame)
    assert len(small) < DEFAULT_SAMPLE_ORDERS
    assert drawn.log_orders == len(small)
    kept = drawn.frame.sort_values("order_id").reset_index(drop=True)
    assert kept["order_id"].tolist() == sorted(small["order_id"])
    np.testing.assert_array_equal(
        kept["propensity"].to_numpy(), small.sort_values("order_id")["propensity"].to_numpy()
    )
    assert (drawn.strata["fraction"] == 1.0).all()
