"""The model contract, parametrised over every learner, and the pure functions behind them."""

from __future__ import annotations

import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

from uplift.data.log import ColumnMap, ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import ConfigError, NotFittedError, SchemaError
from uplift.experiment.metrics import Z95
from uplift.models import LEARNERS, make_learner, train_uplift
from uplift.models.base import BaseUpliftModel, FeatureEncoder, FitData
from uplift.models.effects import Effects
from uplift.models.learners import (
    MAX_WEIGHT,
    DRLearner,
    Fit,
    TLearner,
    dr_pseudo_outcomes,
    fit_side_by_side,
    inverse_propensity_weights,
    lgbm_params,
    train_lgbm,
)
from uplift.models.propensity import arm_probabilities, pairwise
from uplift.models.select import clear_margin, score_candidates

OURS = ("t_lgbm", "s_lgbm", "dr_lgbm", "s_linear")
THIRD_PARTY = tuple(name for name in LEARNERS if name not in OURS)
EVERY_LEARNER = [
    *OURS,
    *(pytest.param(name, marks=pytest.mark.slow) for name in THIRD_PARTY),
]


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame | pd.Series]:
    """A small randomised log with a non-default index, so index handling is tested too."""
    log = ExperimentLog.from_frame(simulate(2_500, weeks=2, seed=5).log).frame
    log.index = pd.Index(np.arange(len(log))[::-1] * 7 + 3)
    features = [
        c
        for c in log.columns
        if c not in ("order_id", "arm", "retained", "revenue", "propensity", "assigned_at")
    ]
    return {
        "X": log[features],
        "retained": log["retained"],
        "revenue": log["revenue"],
        "arm": log["arm"],
        "propensity": log["propensity"],
    }


def _fit(name: str, data: dict, outcome: str = "retained", seed: int = 0) -> BaseUpliftModel:
    model = make_learner(name, seed)
    return model.fit(data["X"], data[outcome], arm=data["arm"], propensity=data["propensity"])


# --------------------------------------------------------------------------------------------
# Contract suite
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVERY_LEARNER)
def test_learner_contract(name: str, small: dict) -> None:
    X = small["X"]
    before = {k: v.copy() for k, v in small.items()}
    model = make_learner(name, seed=1)
    assert (
        model.fit(X, small["retained"], arm=small["arm"], propensity=small["propensity"]) is model
    )
    prediction = model.predict(X)
    arms = sorted(set(small["arm"]) - {"control"})
    assert list(prediction.columns) == arms
    assert prediction.index.equals(X.index)
    assert (prediction.dtypes == np.float64).all()
    assert np.isfinite(prediction.to_numpy()).all()
    for key, value in before.items():  # inputs are never modified
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, small[key])
        else:
            pd.testing.assert_series_equal(value, small[key])
    again = make_learner(name, seed=1).fit(
        X, small["retained"], arm=small["arm"], propensity=small["propensity"]
    )
    pd.testing.assert_frame_equal(again.predict(X), prediction)  # same seed, same model


@pytest.mark.parametrize("name", EVERY_LEARNER)
def test_learner_continuous_outcome(name: str, small: dict) -> None:
    prediction = _fit(name, small, "revenue").predict(small["X"])
    assert np.isfinite(prediction.to_numpy()).all()
    # Revenue uplift is in currency: its spread must be far above a 0/1 outcome's.
    assert prediction.abs().to_numpy().max() > 1.0


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_not_fitted_and_clone(name: str, small: dict) -> None:
    model = make_learner(name)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict(small["X"])
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    param = "C" if name == "s_linear" else "n_estimators"  # the linear learner has no trees
    copy.set_params(**{param: 7})
    assert copy.get_params()[param] == 7
    assert model.get_params()[param] != 7


def test_a_learner_shows_and_refuses_parameters_as_scikit_learn_does() -> None:
    """Without scikit-learn's base class: the repr names the arguments off their defaults, and a
    name the constructor does not take is refused."""
    assert repr(make_learner("s_lgbm", seed=3)) == "SLearner(random_state=3)"
    assert repr(make_learner("causalml_x")) == "CausalMLLearner(kind='x')"
    with pytest.raises(ConfigError, match="SLearner has no parameter colour"):
        make_learner("s_lgbm").set_params(colour=1)


def test_invalid_params_raise_at_fit_not_init(small: dict) -> None:
    model = TLearner(n_estimators=0)  # constructing stores only
    with pytest.raises(ConfigError, match="n_estimators must be an integer >= 1"):
        model.fit(small["X"], small["retained"], arm=small["arm"])
    with pytest.raises(ConfigError, match="random_state must be an integer; got 'x'"):
        TLearner(random_state="x").fit(small["X"], small["retained"], arm=small["arm"])
    with pytest.raises(ConfigError, match="n_folds must be at least 2"):
        DRLearner(n_folds=1).fit(small["X"], small["retained"], arm=small["arm"])


def test_fit_input_errors(small: dict) -> None:
    X, y, arm = small["X"], small["retained"], small["arm"]
    model = TLearner()
    with pytest.raises(SchemaError, match="control arm 'none' not found"):
        model.fit(X, y, arm=arm, control="none")
    with pytest.raises(SchemaError, match="y must be finite"):
        model.fit(X, y.where(y.index != y.index[3]), arm=arm)
    with pytest.raises(SchemaError, match=r"propensity must lie in \(0, 1\]"):
        model.fit(X, y, arm=arm, propensity=np.zeros(len(X)))
    with pytest.raises(SchemaError, match="X must be a pandas DataFrame"):
        model.fit(X.to_numpy(), y, arm=arm)
    with pytest.raises(SchemaError, match="arm holds only the control arm"):
        model.fit(X, y, arm=np.full(len(X), "control"))
    fitted = model.fit(X, y, arm=arm)
    with pytest.raises(SchemaError, match=r"feature column\(s\) hour missing"):
        fitted.predict(X.drop(columns="hour"))


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def test_dr_pseudo_outcomes_known_values() -> None:
    y = np.array([1.0, 0.0, 1.0])
    arm = np.array([0, 1, 2])
    p = np.array([0.5, 0.25, 0.2])
    mu = np.array([[0.4, 0.6, 0.5], [0.3, 0.5, 0.2], [0.2, 0.2, 0.9]])
    # Row 0 is control: every arm's pseudo-outcome is mu_a - mu_0 - (1 - 0.4) / 0.5.
    # Row 1 took arm 1: arm 1 gets mu_1 - mu_0 + (0 - 0.5) / 0.25, arm 2 only mu_2 - mu_0.
    # Row 2 took arm 2: arm 2 gets 0.9 - 0.2 + (1 - 0.9) / 0.2.
    expected = np.array([[0.2 - 1.2, 0.1 - 1.2], [0.2 - 2.0, -0.1], [0.0, 0.7 + 0.5]])
    np.testing.assert_allclose(dr_pseudo_outcomes(y, arm, p, mu), expected)


def test_inverse_propensity_weights_mean_one_per_arm() -> None:
    arm = np.array([0, 0, 1, 1, 1])
    weights = inverse_propensity_weights(arm, np.array([0.5, 0.25, 0.1, 0.2, 0.4]))
    np.testing.assert_allclose(np.bincount(arm, weights=weights) / np.bincount(arm), [1.0, 1.0])
    np.testing.assert_allclose(weights[:2], [2 / 3, 4 / 3])  # 1/p relative to the arm's mean


def test_inverse_propensity_weights_are_capped_for_explored_orders() -> None:
    # A policy's arm: 99 orders it chose (p = 0.9) and one explored (p = 0.008). Uncapped, the
    # explored order would weigh 112 / 2.1 = 53 times the mean: half the arm's total weight.
    arm = np.zeros(100, dtype=np.int64)
    propensity = np.r_[np.full(99, 0.9), 0.008]
    weights = inverse_propensity_weights(arm, propensity)
    assert weights.max() == MAX_WEIGHT
    assert weights[:99].max() < 1.0


def test_feature_encoder_unseen_level_and_type_change() -> None:
    train = pd.DataFrame({"device": ["app", "web", "app"], "hour": [1, 2, 3]})
    encoder = FeatureEncoder().fit(train)
    new = pd.DataFrame({"device": ["tv", "web"], "hour": [4, 5]})
    codes = encoder.to_numpy(encoder.transform(new))
    np.testing.assert_array_equal(codes, [[-1.0, 4.0], [1.0, 5.0]])
    with pytest.raises(SchemaError, match="feature column hour was numeric"):
        encoder.transform(new.assign(hour=["a", "b"]))


def test_feature_encoder_fills_missing_numbers_for_libraries_that_refuse_them() -> None:
    train = pd.DataFrame({"stock": [0.2, np.nan, 0.6, 0.8], "hour": [1.0, 2.0, 3.0, 4.0]})
    encoder = FeatureEncoder().fit(train)
    new = pd.DataFrame({"stock": [np.nan, 0.4], "hour": [np.nan, 5.0]})
    matrix = encoder.to_numpy(encoder.transform(new))
    # Missing numbers become the training median; the column that had gaps in training gets
    # an indicator column after the others (hour had none, so it gets no indicator).
    np.testing.assert_array_equal(matrix, [[0.6, 2.5, 1.0], [0.4, 5.0, 0.0]])


def _fit_data(propensity: np.ndarray, codes: np.ndarray) -> FitData:
    n = len(codes)
    X = pd.DataFrame({"x": np.linspace(0, 1, n)})
    return FitData(X, np.zeros(n), codes, propensity, ("a", "b"), True)


def test_arm_probabilities_randomised_log_is_exact() -> None:
    codes = np.tile([0, 1, 2, 2], 50)
    data = _fit_data(np.tile([0.25, 0.25, 0.5, 0.5], 50), codes)
    probabilities = arm_probabilities(data, n_jobs=1, seed=0)
    np.testing.assert_allclose(probabilities, np.tile([0.25, 0.25, 0.5], (200, 1)))
    np.testing.assert_allclose(pairwise(probabilities), np.tile([0.5, 2 / 3], (200, 1)))


def test_arm_probabilities_targeting_log_keeps_logged_propensity() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 600)
    logged = rng.uniform(0.2, 0.8, 600)
    probabilities = arm_probabilities(_fit_data(logged, codes), n_jobs=1, seed=0)
    np.testing.assert_allclose(probabilities[np.arange(600), codes], logged)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_best_arm_picks_highest_net_value_or_control() -> None:
    effects = Effects.from_frame(
        pd.DataFrame({"revenue_uplift_a": [5.0, 1.0, 3.0], "revenue_uplift_b": [4.0, 0.5, 9.0]})
    )
    arms = effects.best_arm({"a": 2.0, "b": 5.5})
    # Net values: a = 3, -1, 1; b = -1.5, -5, 3.5.
    assert list(arms) == ["a", "control", "b"]


# --------------------------------------------------------------------------------------------
# UpliftModel
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(4_000, weeks=4, seed=2).log)


def test_predict_effects_columns_and_revenue_identity(log: ExperimentLog) -> None:
    model = train_uplift(log, learner="dr_lgbm")
    effects = model.predict_effects(log.frame).to_frame()
    arms = log.treatment_arms
    assert list(effects.columns) == [
        *(f"retained_uplift_{a}" for a in arms),
        *(f"revenue_uplift_{a}" for a in arms),
        "retained_base",
    ]
    assert effects.index.equals(log.frame.index)
    value = log.frame["order_value"].to_numpy()
    for arm in arms:
        np.testing.assert_allclose(
            effects[f"revenue_uplift_{arm}"], effects[f"retained_uplift_{arm}"] * value
        )
    base = effects["retained_base"].to_numpy()
    kept = effects[[f"retained_uplift_{a}" for a in arms]].to_numpy() + base[:, None]
    assert ((base >= 0) & (base <= 1)).all()
    assert ((kept >= -1e-12) & (kept <= 1 + 1e-12)).all()  # every arm's P(retained) valid
    outcomes = model.predict_outcomes(log.frame, "revenue")
    np.testing.assert_allclose(outcomes["control"], base * value)


def test_predict_effects_needs_the_inputs(log: ExperimentLog) -> None:
    model = train_uplift(log, learner="s_lgbm")
    with pytest.raises(SchemaError, match=r"orders lack column\(s\) order_value"):
        model.predict_effects(log.frame.drop(columns="order_value"))
    with pytest.raises(SchemaError, match="order_value must be a finite number >= 0"):
        model.predict_effects(log.frame.assign(order_value=-1.0))


def test_auto_scores_every_candidate_on_held_out_orders(log: ExperimentLog) -> None:
    model = train_uplift(log, candidates=("t_lgbm", "s_lgbm"), costs={"expedite": 5.0})
    scores = model.selection.scores
    assert list(scores["learner"]) == ["t_lgbm", "s_lgbm"]
    assert scores["chosen"].sum() == 1
    assert model.learner == scores.loc[scores["chosen"], "learner"].item()
    assert model.selection.method == "time_folds"
    # Every order is scored once, by models fitted on the other blocks of decision time.
    assert model.selection.n_orders == len(log)
    # Paired against the first candidate (the default), which is its own zero.
    default = scores.iloc[0]
    assert default["diff_to_default"] == 0.0
    assert not default["clearly_better"]
    np.testing.assert_allclose(
        scores["diff_to_default"], scores["policy_value"] - default["policy_value"], atol=1e-12
    )
    # The default stays unless another candidate's paired interval lies above zero; with one
    # alternative the Bonferroni margin is the plain 95% interval's.
    assert clear_margin(len(scores)) == pytest.approx(Z95, abs=1e-9)
    clearly = scores["diff_ci_lower"] > 0
    assert scores["clearly_better"].equals(clearly)
    expected = scores[clearly]["policy_value"].idxmax() if clearly.any() else 0
    assert scores.loc[expected, "chosen"]


def test_clear_margin_is_bonferroni_adjusted_for_the_alternatives() -> None:
    # One-sided 2.5% per alternative, divided among them: the family-wise chance that noise
    # displaces the default stays at 2.5% (scipy's normal quantiles as the reference).
    for candidates, alternatives in ((2, 1), (3, 2), (5, 4)):
        expected = stats.norm.ppf(1 - 0.025 / alternatives)
        assert clear_margin(candidates) == pytest.approx(expected, abs=1e-9)
    assert clear_margin(3) == pytest.approx(2.2414, abs=1e-4)


def test_auto_keeps_the_default_unless_another_is_clearly_better() -> None:
    # A randomised log where arm "a" truly adds 0.3 to retention on every order.
    rng = np.random.default_rng(0)
    n = 4_000
    arm = rng.choice(["control", "a"], size=n)
    retained = (rng.random(n) < np.where(arm == "a", 0.8, 0.5)).astype(float)
    frame = pd.DataFrame({"arm": arm, "retained": retained, "propensity": 0.5})
    mu = pd.DataFrame({"control": np.full(n, 0.5), "a": np.full(n, 0.8)})

    def treating(share: float) -> Effects:
        uplift = np.where(np.arange(n) < share * n, 0.1, -0.1)
        return Effects("control", ("a",), pd.DataFrame({"a": uplift}), None, None)

    def chosen(**shares: float) -> str:
        effects = {name: treating(share) for name, share in shares.items()}
        scores = score_candidates(frame, effects, mu, {}, "retained")
        return str(scores.loc[scores["chosen"], "learner"].item())

    # Treating 1% more orders is worth 0.003 per order: within noise, the default stays.
    assert chosen(default=0.0, slightly=0.01) == "default"
    # Treating every order is worth 0.3 per order: clearly better, so it is chosen ...
    assert chosen(default=0.0, slightly=0.01, everyone=1.0) == "everyone"
    # ... and of two clearly better candidates the one of higher value wins.
    assert chosen(default=0.0, half=0.5, everyone=1.0) == "everyone"


def test_auto_cross_fits_without_decision_times(log: ExperimentLog) -> None:
    frame = log.frame.drop(columns="assigned_at")
    untimed = ExperimentLog.from_frame(frame)
    model = train_uplift(untimed, candidates=("s_lgbm",))
    assert model.selection.method == "cross_fit"
    assert model.selection.n_orders == len(untimed)  # every order scored once, out of fold


def test_train_rejects_bad_options(log: ExperimentLog) -> None:
    with pytest.raises(ConfigError, match="learner must be one of"):
        train_uplift(log, learner="forest")
    with pytest.raises(ConfigError, match=r"costs name arm\(s\) teleport"):
        train_uplift(log, learner="t_lgbm", costs={"teleport": 1.0})
    with pytest.raises(ConfigError, match="costs must be finite numbers >= 0"):
        train_uplift(log, learner="t_lgbm", costs={"expedite": -1.0})


def test_revenue_only_log_gives_revenue_uplift_only() -> None:
    world = simulate(4_000, weeks=2, seed=4)
    frame = world.log.drop(columns=["cancelled", "order_value"])
    revenue_log = ExperimentLog.from_frame(frame)
    model = train_uplift(revenue_log, learner="t_lgbm")
    effects = model.predict_effects(revenue_log.frame).to_frame()
    assert list(effects.columns) == [f"revenue_uplift_{a}" for a in revenue_log.treatment_arms]
    assert np.isfinite(effects.to_numpy()).all()
    with pytest.raises(SchemaError, match="no retained outcome"):
        model.predict_outcomes(revenue_log.frame, "retained")


@pytest.mark.slow
def test_causalml_leaves_the_users_plot_style_alone() -> None:
    # causalml restyles matplotlib when first imported, so this runs in a fresh interpreter.
    script = """
import matplotlib
from uplift.data.log import ExperimentLog
from uplift.models import make_learner
from uplift.data.simulate import simulate
log = ExperimentLog.from_frame(simulate(2000, weeks=1, seed=0).log)
matplotlib.rcParams["axes.facecolor"] = "#123456"
make_learner("causalml_t", 0).fit(
    log.X, log.frame["retained"], arm=log.frame["arm"], propensity=log.frame["propensity"]
)
print(matplotlib.rcParams["axes.facecolor"])
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "#123456"


def test_costs_without_an_order_value_are_refused_not_dropped() -> None:
    frame = simulate(3_000, weeks=2, seed=4).log.drop(columns=["order_value", "revenue"])
    log = ExperimentLog.from_frame(frame)
    with pytest.raises(ConfigError, match=r"neither revenue nor an order value.*--order-value"):
        train_uplift(log, learner="t_lgbm", costs={"expedite": 2.0})
    # Zero costs say nothing in currency: nothing to refuse.
    train_uplift(log, learner="t_lgbm", costs={"expedite": 0.0}, validate=False)
    valued = ExperimentLog.from_frame(frame, column_map=ColumnMap(order_value=40.0))
    priced = train_uplift(valued, learner="t_lgbm", costs={"expedite": 2.0})
    assert priced.training["costs"] == {"expedite": 2.0}  # the card keeps them for rank


def test_boosters_fitted_side_by_side_equal_those_fitted_one_by_one(small: dict) -> None:
    # Side by side, each booster's rows are taken and binned while the others wait: the same
    # boosters, to the byte, as fitting each alone (the rows, the binning and the seed alike).
    X, y = small["X"], small["retained"].to_numpy(float)
    encoded = FeatureEncoder().fit(X).transform(X)
    params = lgbm_params(
        binary=True, learning_rate=0.1, num_leaves=7, min_child_samples=20, n_jobs=1, seed=5
    )

    def rows(i: int) -> Fit:
        drawn = np.random.default_rng(i).integers(0, len(encoded), len(encoded))
        return params, encoded.iloc[drawn], y[drawn], 20, None

    def plain(i: int) -> lgb.Booster:  # LightGBM binning its rows itself, inside train
        _, X_i, y_i, rounds, _ = rows(i)
        return lgb.train(params, lgb.Dataset(X_i, label=y_i, params={"verbose": -1}), rounds)

    together = fit_side_by_side(4, rows)
    alone = [train_lgbm(*rows(i)) for i in range(4)]
    texts = [b.model_to_string() for b in together]
    assert texts == [b.model_to_string() for b in alone]
    assert texts == [plain(i).model_to_string() for i in range(4)]
