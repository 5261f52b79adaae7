"""The Qini coefficient's bootstrap interval: each resample's Qini, and coverage of the truth.

The truth is the population Qini of a fixed ranking in the simulated order world: every order
of a large pool entered twice, once treated with its true chance of being kept under the arm and
once as control with its true chance without action, so the Qini has no outcome noise and the
arms are balanced at every cut-off, as randomisation makes them in expectation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uplift.data.simulate import CONTROL, simulate
from uplift.exceptions import ConfigError
from uplift.experiment.metrics import (
    QINI_CUTOFFS,
    _areas_at,
    _Arm,
    _Ranked,
    qini_coefficient,
    qini_interval,
    uplift_metrics_by_arm,
)

ARM = "payment_rescue"
SAMPLES = 200  # independent logs, one interval each
SAMPLE_ORDERS = 10_000


def test_a_resample_scores_as_the_rows_it_draws() -> None:
    # With every group of equal scores a cut-off, a resample's Qini is the Qini of the rows it
    # drew, written out (ties of one score and IPW weights included): sums in another order only.
    rng = np.random.default_rng(3)
    n = 400
    score = rng.integers(0, 60, n) / 10.0  # many ties
    treated = rng.random(n) < 0.4
    y = rng.random(n) * (rng.random(n) < 0.3)
    weights = 1 / rng.uniform(0.2, 0.8, n)
    ranked = _Ranked.of(score, y, treated, weights)
    assert ranked.ends.size < QINI_CUTOFFS
    arms = [_Arm.of(ranked, ranked.ends, rows) for rows in (ranked.treated, ~ranked.treated)]
    drawn = [rng.integers(0, arm.size, size=(3, arm.size)) for arm in arms]
    areas = _areas_at(arms, ranked.ends.size, drawn)
    positions = [np.flatnonzero(ranked.treated), np.flatnonzero(~ranked.treated)]
    for k in range(3):
        rows = np.concatenate([group[d[k]] for group, d in zip(positions, drawn, strict=True)])
        written_out = qini_coefficient(
            ranked.score[rows], ranked.y[rows], ranked.treated[rows], ranked.weights[rows]
        )
        assert areas[k] == pytest.approx(written_out, abs=1e-12)


def test_every_row_drawn_once_gives_the_qini_itself_at_the_cutoffs() -> None:
    rng = np.random.default_rng(4)
    n = 50_000
    score, treated = rng.normal(size=n), rng.random(n) < 0.5
    y = (rng.random(n) < 0.3 + 0.1 * treated * (score > 0)).astype(float)
    ranked = _Ranked.of(score, y, treated, None)
    cutoffs = ranked.ends[np.linspace(0, n - 1, QINI_CUTOFFS).round().astype(int)]
    arms = [_Arm.of(ranked, cutoffs, rows) for rows in (ranked.treated, ~ranked.treated)]
    coarse = _areas_at(arms, cutoffs.size, [np.arange(arm.size)[None, :] for arm in arms])[0]
    low, high = qini_interval(score, y, treated)
    # 2,000 cut-offs over 50,000 rows: the area moves by 1.4e-5 of the interval's width
    # (measured); the bound leaves a factor of 70.
    assert abs(coarse - qini_coefficient(score, y, treated)) < (high - low) / 1_000


def _population_qini(truth: pd.DataFrame, score: np.ndarray) -> float:
    kept_arm = 1 - truth[f"p_cancel_{ARM}"].to_numpy()
    kept_control = 1 - truth[f"p_cancel_{CONTROL}"].to_numpy()
    both = np.r_[score, score]
    return qini_coefficient(
        both, np.r_[kept_arm, kept_control], np.r_[np.ones(len(score)), np.zeros(len(score))]
    )


def _score(truth: pd.DataFrame, seed: int) -> np.ndarray:
    """A fixed ranking as a model would give: the true uplift plus as much noise again."""
    uplift = (truth[f"p_cancel_{CONTROL}"] - truth[f"p_cancel_{ARM}"]).to_numpy()
    return uplift + np.random.default_rng(seed).normal(0, uplift.std(), len(uplift))


@pytest.mark.slow
@pytest.mark.parametrize("logged_policy", [False, True], ids=["randomised", "logged policy"])
def test_the_interval_covers_the_population_qini(logged_policy: bool) -> None:
    pool = simulate(400_000, seed=71, world="easy").truth
    truth = _population_qini(pool, _score(pool, 1))
    world = simulate(SAMPLES * SAMPLE_ORDERS, seed=72, world="easy", logged_policy=logged_policy)
    # The log is in time order and the world drifts from week to week: shuffled, consecutive
    # rows are a random sample of the world's orders, as the pool is.
    shuffle = np.random.default_rng(0).permutation(len(world.log))
    log = world.log.iloc[shuffle].reset_index(drop=True)
    score = _score(world.truth.iloc[shuffle], 2)
    covered, widths = 0, []
    for sample in range(SAMPLES):
        rows = slice(sample * SAMPLE_ORDERS, (sample + 1) * SAMPLE_ORDERS)
        arms = log["arm"].to_numpy()[rows]
        pair = (arms == ARM) | (arms == CONTROL)
        low, high = qini_interval(
            score[rows][pair],
            1 - log["cancelled"].to_numpy()[rows][pair],
            arms[pair] == ARM,
            1 / log["propensity"].to_numpy()[rows][pair],
            seed=sample,
        )
        covered += low <= truth <= high
        widths.append(high - low)
    # The ranking is worth something: the truth is well away from 0 at this width.
    assert truth > 0.5 * np.median(widths)
    # 95% nominal over 200 independent logs of about 3,600 rows of the pair: a binomial
    # standard deviation of 1.5 points, and the band is 3 of them either side (measured: 191
    # and 187 of 200; at 5,000 orders a sample the percentile bootstrap gave 185, a small
    # undercoverage the band also allows).
    assert 0.905 <= covered / SAMPLES <= 0.995, covered


def test_a_random_ranking_has_an_interval_around_zero() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < 0.3 + 0.05 * treated).astype(float)
    low, high = qini_interval(rng.normal(size=n), y, treated)
    assert low < 0 < high


def test_same_seed_same_interval_and_a_lower_level_inside() -> None:
    rng = np.random.default_rng(6)
    n = 3_000
    score, treated = rng.normal(size=n), rng.random(n) < 0.5
    y = (rng.random(n) < 0.3 + 0.1 * treated * (score > 0)).astype(float)
    assert qini_interval(score, y, treated, seed=1) == qini_interval(score, y, treated, seed=1)
    low, high = qini_interval(score, y, treated, seed=1)
    low80, high80 = qini_interval(score, y, treated, level=0.8, seed=1)
    assert low < low80 < qini_coefficient(score, y, treated) < high80 < high


def test_the_metrics_table_gives_the_interval_when_asked() -> None:
    rng = np.random.default_rng(7)
    n = 4_000
    arms = rng.choice(["control", "a", "b"], n)
    log = pd.DataFrame({"arm": arms, "retained": (rng.random(n) < 0.4).astype(float)})
    uplift = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    plain = uplift_metrics_by_arm(uplift, log)
    assert "qini_ci_lower" not in plain.columns
    table = uplift_metrics_by_arm(uplift, log, resamples=50)
    for _, row in table.iterrows():
        mask = (arms == row["arm"]) | (arms == "control")
        expected = qini_interval(
            uplift[row["arm"]].to_numpy()[mask],
            log["retained"].to_numpy()[mask],
            arms[mask] == row["arm"],
            resamples=50,
        )
        assert (row["qini_ci_lower"], row["qini_ci_upper"]) == expected
        assert row["qini_ci_lower"] <= row["qini_coefficient"] <= row["qini_ci_upper"]


@pytest.mark.parametrize(
    ("option", "value"), [("resamples", 0), ("resamples", 2.5), ("level", 1.0), ("level", 0)]
)
def test_bad_options_are_refused(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        qini_interval([0.1, 0.2], [1.0, 0.0], [True, False], **{option: value})


def test_the_metrics_table_refuses_a_bad_resample_count() -> None:
    log = pd.DataFrame({"arm": ["control", "a"], "retained": [1.0, 0.0]})
    with pytest.raises(ConfigError, match="resamples"):
        uplift_metrics_by_arm(pd.DataFrame({"a": [0.1, 0.2]}), log, resamples=-3)
