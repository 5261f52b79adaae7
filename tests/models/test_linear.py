"""The linear S-learner: contract, recovery of a known effect, weighting, encoding, saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.base import clone

from tests.models.model_files import copy_folder, edit_model_json
from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import ConfigError, ModelLoadError, NotFittedError
from uplift.models import linear, load_model, make_learner, save_model, train_uplift
from uplift.models.learners import OutcomeLearner, inverse_propensity_weights
from uplift.models.linear import (
    LinearLearner,
    adapted_scales,
    base_width,
    categorical_levels,
    effective_size,
    numeric_columns,
    penalty_for,
    signal_groups,
)


def _promotion(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Features and the true log-odds of buying under each arm; the effects are linear."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(loc=10.0, scale=3.0, size=n),  # off-centre: the model standardises
            "shop": rng.choice(["north", "south", "west"], size=n),
        }
    )
    shop = X["shop"].map({"north": 0.0, "south": 0.4, "west": -0.4}).to_numpy()
    z1, z2 = X["x1"].to_numpy(), (X["x2"].to_numpy() - 10.0) / 3.0
    control = -2.0 + 0.5 * z1 + shop
    return X, {"control": control, "a": control + 0.3 + 0.6 * z2, "b": control - 0.5 * z1}


def _buys(logits: dict[str, np.ndarray], arm: np.ndarray, seed: int) -> np.ndarray:
    chance = np.select([arm == name for name in logits], [expit(v) for v in logits.values()])
    return (np.random.default_rng(seed).random(len(arm)) < chance).astype(float)


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    log = ExperimentLog.from_frame(simulate(2_500, weeks=2, seed=5).log).frame
    log.index = pd.Index(np.arange(len(log))[::-1] * 7 + 3)
    outcomes = ("order_id", "arm", "retained", "revenue", "propensity", "assigned_at")
    features = [c for c in log.columns if c not in outcomes]
    return {"X": log[features], "y": log["retained"], "arm": log["arm"], "p": log["propensity"]}


def test_follows_the_learner_contract(small: dict[str, Any]) -> None:
    X = small["X"]
    model = make_learner("s_linear", seed=1)
    assert isinstance(model, LinearLearner)
    assert isinstance(model, OutcomeLearner)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict(X)
    assert model.fit(X, small["y"], arm=small["arm"], propensity=small["p"]) is model
    uplift = model.predict(X)
    assert list(uplift.columns) == sorted(set(small["arm"]) - {"control"})
    assert uplift.index.equals(X.index)
    assert (uplift.dtypes == np.float64).all()
    assert np.isfinite(uplift.to_numpy()).all()
    outcomes = model.predict_outcomes(X)
    assert list(outcomes.columns) == ["control", *uplift.columns]
    assert ((outcomes > 0) & (outcomes < 1)).all().all()  # probabilities of a 0/1 outcome
    pd.testing.assert_frame_equal(outcomes[uplift.columns].sub(outcomes["control"], axis=0), uplift)
    again = make_learner("s_linear", seed=1)
    again.fit(X, small["y"], arm=small["arm"], propensity=small["p"])
    pd.testing.assert_frame_equal(again.predict(X), uplift)
    assert model.predict(X.iloc[:0]).shape == (0, uplift.shape[1])
    copy = clone(model).set_params(C=3.0)
    assert copy.get_params()["C"] == 3.0
    assert model.get_params()["C"] != 3.0


def test_the_default_penalty_weakens_as_the_log_grows(small: dict[str, Any]) -> None:
    assert penalty_for(20_000) == pytest.approx((0.01, 0.25, 0.0))
    assert penalty_for(200_000) == pytest.approx((0.1, 0.5, 1.0))
    assert penalty_for(1_000) == penalty_for(20_000)  # held outside the measured sizes
    assert penalty_for(5_000_000) == penalty_for(200_000)
    middle = penalty_for(63_246)  # 20,000 x sqrt(10): halfway on the log scale
    assert middle == pytest.approx((0.01 * 10**0.5, 0.25 * 2**0.5, 0.5), rel=1e-4)
    X, y, arm = small["X"], small["y"], small["arm"]
    assert LinearLearner().fit(X, y, arm=arm).penalty_ == penalty_for(len(X))
    chosen = LinearLearner(C=3.0, adaptation=0.5).fit(X, y, arm=arm).penalty_
    assert chosen == (3.0, penalty_for(len(X))[1], 0.5)


def test_a_targeted_log_is_penalised_by_its_effective_size() -> None:
    # 60,000 orders, each arm given to 90% of one half of the orders and 10% of the other:
    # weighted back to the population, the log holds as much as about 22,000 randomised ones.
    rng = np.random.default_rng(0)
    n = 60_000
    x = rng.normal(size=n)
    high = x > 0
    treated = rng.random(n) < np.where(high, 0.9, 0.1)
    arm = np.where(treated, "a", "control")
    propensity = np.where(treated == high, 0.9, 0.1)
    y = (rng.random(n) < 0.3 + 0.05 * treated).astype(int)
    weights = inverse_propensity_weights((arm == "a").astype(np.int64), propensity)
    effective = effective_size(weights)
    assert 0.3 * n < effective < 0.45 * n
    assert effective_size(np.ones(n)) == pytest.approx(n)  # a randomised log: its rows
    model = LinearLearner().fit(pd.DataFrame({"x": x}), y, arm=arm, propensity=propensity)
    assert model.penalty_ == penalty_for(effective)
    assert model.penalty_[0] < penalty_for(n)[0]  # a stronger penalty than its rows would get


def _sparse(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Twelve numbers and a shop; arm a's effect varies with x1 alone, arm b's with the shop
    alone: every other arm x signal interaction is noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(12)})
    X["shop"] = rng.choice(["east", "north", "south", "west"], size=n)
    control = -1.0 + 0.5 * X["x0"].to_numpy()
    shop = X["shop"].map({"east": 0.0, "north": 0.3, "south": 0.0, "west": -0.3}).to_numpy()
    return X, {
        "control": control,
        "a": control + 0.1 + 0.15 * X["x1"].to_numpy(),
        "b": control + 0.05 + shop,
    }


@pytest.mark.parametrize("pilot", [None, 10_000])
def test_the_adapted_refit_frees_the_signals_that_modify_an_arm(
    pilot: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pilot is not None:  # the first fit on a quarter of the rows, as on a large log
        monkeypatch.setattr(linear, "PILOT_ORDERS", pilot)
    X, logits = _sparse(40_000, seed=0)
    arm = np.random.default_rng(10).choice(["control", "a", "b"], size=len(X))
    y = _buys(logits, arm, seed=20)
    fresh, truth = _sparse(20_000, seed=100)
    p = 12 + 4  # the feature part of the design: twelve numbers and four shops
    signal = np.zeros((2, p), dtype=bool)
    signal[0, 1] = signal[1, 12:] = True  # arm a x x1, arm b x every shop
    found = {}
    for adaptation in (0.0, 1.0):
        # The penalty of a 20,000-order log, under which the noise groups matter.
        model = LinearLearner(C=0.01, interaction_scale=0.25, adaptation=adaptation)
        model.fit(X, y, arm=arm)
        effects = model.coef_[p + 2 :].reshape(2, p)
        uplift = model.predict(fresh)
        found[adaptation] = (
            [np.corrcoef(uplift[a], expit(truth[a]) - expit(truth["control"]))[0, 1] for a in "ab"],
            np.sqrt(np.mean(effects[~signal] ** 2)) / np.sqrt(np.mean(effects[signal] ** 2)),
        )
    (plain, plain_noise), (adapted, adapted_noise) = found[0.0], found[1.0]
    # Over seeds 0-4 of this draw: correlations with the true uplift rose by 0.04-0.09 (arm a)
    # and 0.10-0.19 (arm b); the noise groups' size relative to the signals' fell to 0.49-0.62
    # of the single fit's.
    assert adapted[0] > plain[0] + 0.02
    assert adapted[1] > plain[1] + 0.05
    assert adapted_noise < 0.7 * plain_noise


def test_signal_groups_and_adapted_scales(small: dict[str, Any]) -> None:
    X = small["X"].copy()
    X.loc[X.index[::9], "stock_confidence"] = np.nan
    model = LinearLearner(adaptation=0.0).fit(X, small["y"], arm=small["arm"])
    encoder = model.encoder_
    groups = signal_groups(encoder)
    numeric = numeric_columns(encoder)
    assert len(groups) == base_width(encoder)
    assert np.unique(groups).tolist() == list(range(len(encoder.columns)))  # one per input
    missing = len(numeric) + list(encoder.with_missing).index("stock_confidence")
    assert groups[missing] == groups[numeric.index("stock_confidence")]
    start = len(numeric) + len(encoder.with_missing)
    for _, levels in categorical_levels(encoder):
        assert len(set(groups[start : start + len(levels)])) == 1
        start += len(levels)
    # Groups 0 and 1 of two columns each, group 2 of one; two arms.
    columns = np.array([0, 0, 1, 1, 2])
    effects = np.array([[3.0, 4.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 2.0]])
    size = np.array([[np.sqrt(12.5), 0.0, 1.0], [1.0, 0.0, 2.0]])  # root mean square per group
    relative = size / size.mean()
    factors = adapted_scales(effects, columns, power=1.0)
    np.testing.assert_allclose(factors, np.sqrt(relative)[:, columns])
    np.testing.assert_allclose(adapted_scales(effects, columns, power=0.0), 1.0)
    np.testing.assert_allclose(adapted_scales(np.zeros((2, 5)), columns, power=1.0), 1.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"C": 0}, "C must be a number > 0"),
        ({"interaction_scale": -1.0}, "interaction_scale"),
        ({"adaptation": -0.5}, "adaptation must be a number >= 0"),
    ],
)
def test_invalid_params_raise_at_fit(small: dict[str, Any], params: dict, message: str) -> None:
    model = LinearLearner(**params)  # constructing stores only
    with pytest.raises(ConfigError, match=message):
        model.fit(small["X"], small["y"], arm=small["arm"])


def test_recovers_a_linear_heterogeneous_effect() -> None:
    X, logits = _promotion(20_000, seed=0)
    arm = np.random.default_rng(1).choice(["control", "a", "b"], size=len(X))
    model = LinearLearner().fit(X, _buys(logits, arm, seed=2), arm=arm)
    fresh, truth = _promotion(10_000, seed=3)
    uplift = model.predict(fresh)
    for name in ("a", "b"):
        true = expit(truth[name]) - expit(truth["control"])
        # The truth is in the model's family, so only noise and the penalty stand between
        # them: 0.86-0.94 per arm over five draws of this data with the default penalty
        # (0.96-0.997 with interaction_scale=1). Without interactions (interaction_scale=1e-4)
        # the baseline risk alone gives 0.55-0.68: above 0.8, the interactions were learned.
        assert np.corrcoef(uplift[name], true)[0, 1] > 0.8, name


def test_propensity_weights_undo_a_targeting_policy() -> None:
    # The policy promotes 90% of the orders with |x| > 1, where the effect 10 x^2 is large,
    # and 10% of the others. A line in x cannot follow x^2, so an unweighted fit averages the
    # effect over the promoted orders (about 20.6) instead of all of them (10 E[x^2] = 10).
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    chance = np.where(np.abs(x) > 1, 0.9, 0.1)
    promoted = rng.random(len(x)) < chance
    arm = np.where(promoted, "promo", "control")
    propensity = np.where(promoted, chance, 1 - chance)
    y = 20 + 5 * x + promoted * 10 * x**2 + rng.normal(scale=20, size=len(x))
    X = pd.DataFrame({"x": x})
    truth = float(np.mean(10 * x**2))
    weighted = LinearLearner().fit(X, y, arm=arm, propensity=propensity).predict(X)["promo"]
    unweighted = LinearLearner().fit(X, y, arm=arm).predict(X)["promo"]
    # Over seeds 0-4 the weighted mean was within 0.5 of the truth, the unweighted 10.6 above.
    assert abs(weighted.mean() - truth) < 1.5
    assert unweighted.mean() - truth > 8


def test_missing_numbers_and_unseen_levels() -> None:
    X, logits = _promotion(4_000, seed=4)
    arm = np.random.default_rng(5).choice(["control", "a", "b"], size=len(X))
    y = _buys(logits, arm, seed=6)
    X.loc[X.index[::10], "x2"] = np.nan  # x2 has gaps in fit, x1 none
    X.loc[X.index[::7], "shop"] = None
    model = LinearLearner().fit(X, y, arm=arm)
    median = model.encoder_.medians["x1"]
    rows = pd.DataFrame(
        {
            "x1": [np.nan, median, 0.5, 0.5, 0.5],
            "x2": [10.0, 10.0, np.nan, 10.0, 10.0],
            "shop": ["north", "north", "north", "mars", None],
        }
    )
    uplift = model.predict(rows).to_numpy()
    assert np.isfinite(uplift).all()
    # x1 had no gaps in fit: a missing x1 is its median and nothing more.
    np.testing.assert_array_equal(uplift[0], uplift[1])
    # x2 had gaps, so missing is a signal of its own: per arm, x1, x2, x2's missing indicator
    # and three shops, and two arm dummies.
    assert model.coef_.shape == ((2 + 1 + 3) * 3 + 2,)
    # An unseen level is all zeros, as a missing one is.
    np.testing.assert_array_equal(uplift[3], uplift[4])


@pytest.mark.parametrize("adaptation", [None, 1.0])  # one ridge fit, or a first and a second
def test_revenue_outcome(adaptation: float | None) -> None:
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"x1": rng.normal(size=6_000), "x2": rng.normal(size=6_000)})
    arm = rng.choice(["control", "voucher"], size=len(X))
    effect = 5.0 + 8.0 * X["x2"].to_numpy()
    revenue = 50 + 10 * X["x1"].to_numpy() + (arm == "voucher") * effect
    revenue = revenue + rng.normal(scale=30, size=len(X))
    model = LinearLearner(adaptation=adaptation).fit(X, revenue, arm=arm)
    assert not model.binary_outcome_
    uplift = model.predict(X)["voucher"].to_numpy()
    # Ridge on the right family at 6,000 orders: correlation 0.99, mean within its error (the
    # difference in means has a standard error of about 0.8).
    assert np.corrcoef(uplift, effect)[0, 1] > 0.95
    assert abs(uplift.mean() - effect.mean()) < 2.5
    level = model.predict_outcomes(X)["control"].to_numpy()
    assert abs(level.mean() - 50) < 2.5  # in currency, not standardised


# --------------------------------------------------------------------------------------------
# Saving


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, pd.DataFrame]:
    """A model with a retained and a revenue learner (no order_value), saved."""
    frame = simulate(3_000, weeks=2, seed=8).log.drop(columns="order_value")
    log = ExperimentLog.from_frame(frame)
    model = train_uplift(log, learner="s_linear")
    return model, save_model(model, tmp_path_factory.mktemp("models") / "m"), log.frame


def test_round_trip_predicts_the_same(saved: tuple[Any, Path, pd.DataFrame]) -> None:
    model, folder, frame = saved
    assert model.retained_base_model is None
    assert model.revenue_base_model is None
    # The learner's numbers are in model.json; the booster is the risk model's.
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json",
        "model_card.json",
        "risk_model-0.lgbm.txt",
    ]
    loaded = load_model(folder)
    for role in ("retained_model", "revenue_model"):
        before, after = getattr(model, role), getattr(loaded, role)
        assert type(after) is LinearLearner
        assert after.get_params() == before.get_params()
        assert sorted(vars(after)) == sorted(vars(before))
    for orders in (frame, frame.astype({"device": "category"})):
        pd.testing.assert_frame_equal(
            loaded.predict_effects(orders).to_frame(),
            model.predict_effects(orders).to_frame(),
            rtol=0,
            atol=1e-12,
        )
        pd.testing.assert_frame_equal(
            loaded.predict_outcomes(orders, "revenue"),
            model.predict_outcomes(orders, "revenue"),
            rtol=0,
            atol=1e-12,
        )


def test_a_model_saved_before_the_adapted_refit_loads(
    saved: tuple[Any, Path, pd.DataFrame], tmp_path: Path
) -> None:
    # Such a model has no adaptation parameter and a penalty of two numbers: it was fitted once.
    def older(payload: dict[str, Any]) -> None:
        for role in ("retained_model", "revenue_model"):
            del payload[role]["params"]["adaptation"]
            payload[role]["linear"]["penalty"].pop()

    model, folder, frame = saved
    older_folder = copy_folder(folder, tmp_path / "m")
    edit_model_json(older_folder, older)
    loaded = load_model(older_folder)
    assert loaded.retained_model.get_params()["adaptation"] == 0.0
    assert loaded.retained_model.penalty_[2] == 0.0
    pd.testing.assert_frame_equal(
        loaded.predict_effects(frame).to_frame(), model.predict_effects(frame).to_frame()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["retained_model"]["linear"]["coef"].pop(), "coef"),
        (lambda p: p["retained_model"]["linear"]["coef"].__setitem__(0, "1e9"), "finite numbers"),
        (lambda p: p["revenue_model"]["linear"]["scales"].__setitem__(0, 0.0), "scales must be"),
        (lambda p: p["retained_model"]["linear"]["medians"].popitem(), "medians"),
        (lambda p: p["retained_model"].pop("linear"), "linear must be an object"),
        (lambda p: p["retained_model"]["params"].update({"C": -1}), "C must be a number > 0"),
        (lambda p: p["retained_model"]["params"].update({"C": "0.1"}), "params must be"),
        (lambda p: p["retained_model"]["linear"]["penalty"].append(1.0), "penalty must be C"),
        (lambda p: p["retained_model"]["linear"].update(penalty=[0.1]), "penalty must be C"),
        (lambda p: p["revenue_model"]["linear"]["penalty"].__setitem__(1, 0), "penalty must be"),
        (lambda p: p["revenue_model"]["linear"]["penalty"].__setitem__(2, -1), "adaptation >= 0"),
        (lambda p: p["retained_model"]["params"].update(adaptation=-1), "adaptation must be"),
    ],
)
def test_damaged_coefficients_are_refused(
    saved: tuple[Any, Path, pd.DataFrame], tmp_path: Path, change: Any, message: str
) -> None:
    folder = copy_folder(saved[1], tmp_path / "m")
    edit_model_json(folder, change)
    with pytest.raises(ModelLoadError, match=rf"model\.json: .*{message}"):
        load_model(folder)
