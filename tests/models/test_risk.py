"""The risk model: calibrated P(cancelled | no action, x) and the family of causes per order.

Recovery tests train on a realistic simulated log (60,000 orders, so about 12,000 control
orders: 9,000 to fit, 3,000 to calibrate) and check on 100,000 fresh orders of another seed
against the simulator's truth. Measured (seeds 0, 1, 2 of the training log, fresh seed + 1000):
expected calibration error against ``p_cancel_control`` 0.0046, 0.0029, 0.0044; cause
agreement with ``true_cause`` among orders above the median predicted risk 0.818, 0.808,
0.866 (all orders 0.722, 0.776, 0.804).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from tests.models.model_files import edit_model_json
from uplift.data.log import ExperimentLog
from uplift.data.simulate import pending_orders, simulate
from uplift.exceptions import ConfigError, ModelLoadError, SchemaError
from uplift.models import UpliftModel, load_model, model_digest, read_card, save_model
from uplift.models import contributions as contributions_module
from uplift.models import training as training_module
from uplift.models.calibration import (
    CalibrationReport,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    choose_calibrator,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    log_loss,
    reliability,
)
from uplift.models.contributions import CAUSES, NO_CAUSE, dominant_cause, logit_column
from uplift.models.risk import RiskModel, fit_risk
from uplift.models.training import train_uplift

LOGITS = [logit_column(c) for c in CAUSES]


@pytest.fixture(scope="module")
def model() -> UpliftModel:
    log = ExperimentLog.from_frame(simulate(60_000, seed=0).log)
    return train_uplift(log, learner="t_lgbm", seed=0)


@pytest.fixture(scope="module")
def fresh() -> tuple[pd.DataFrame, pd.DataFrame]:
    """100,000 orders the model never saw (as at decision time) and their truth."""
    world = simulate(100_000, seed=1000)
    truth = world.truth.set_index("order_id").loc[world.log["order_id"]].reset_index()
    return pending_orders(world.log), truth


@pytest.fixture(scope="module")
def predicted(model: UpliftModel, fresh: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return model.predict_risk(fresh[0])


def _risk(model: UpliftModel) -> RiskModel:
    assert model.risk_model is not None
    return model.risk_model


def _calibration_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """Expected calibration error over 10 equal-count bins of ``predicted`` (slow, plain)."""
    order = np.argsort(predicted, kind="stable")
    gaps = [len(p) * abs(predicted[p].mean() - target[p].mean()) for p in np.array_split(order, 10)]
    return float(sum(gaps) / len(predicted))


# --------------------------------------------------------------------------------------------
# Against the truth
# --------------------------------------------------------------------------------------------


def test_risk_is_calibrated_against_the_truth(
    predicted: pd.DataFrame, fresh: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """ECE against the true control probability at most 0.01 (measured 0.003-0.005 over 3
    seeds). The band: the calibration part holds about 3,000 control orders at a cancel rate
    near 8.5%, so its mean alone is known to +-0.005 (one standard error); 0.01 is two."""
    truth = fresh[1]["p_cancel_control"].to_numpy()
    risk = predicted["risk"].to_numpy()
    assert _calibration_error(risk, truth) <= 0.01
    assert abs(risk.mean() - truth.mean()) <= 0.01
    assert ((risk >= 0) & (risk <= 1)).all()


def test_causes_agree_with_the_truth(
    predicted: pd.DataFrame, fresh: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """The product's target: >= 80% agreement among the orders above the median risk."""
    truth = fresh[1]
    agree = predicted["cause"].to_numpy().astype(str) == truth["true_cause"].to_numpy().astype(str)
    risk = predicted["risk"].to_numpy()
    above = risk >= np.median(risk)
    assert agree[above].mean() >= 0.80
    assert agree.mean() >= 0.70


def test_predict_risk_frames_every_order(
    model: UpliftModel, fresh: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    orders = fresh[0].iloc[:500].set_axis(pd.Index(np.arange(500) * 7 + 3))
    shuffled = orders.sample(frac=1, random_state=0)
    result = model.predict_risk(shuffled)
    assert list(result.columns) == ["risk", "cause", "cause_share", *LOGITS]
    assert result.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(result.loc[orders.index], model.predict_risk(orders))
    empty = model.predict_risk(orders.iloc[:0])
    assert list(empty.columns) == list(result.columns)
    assert empty.empty
    with pytest.raises(SchemaError, match="orders lack column"):
        model.predict_risk(orders.drop(columns="payment_status"))


# --------------------------------------------------------------------------------------------
# Exact tree SHAP
# --------------------------------------------------------------------------------------------


def _lightgbm_families(risk: RiskModel, encoded: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM's own pred_contrib summed by family, and its expected value column."""
    shap = np.asarray(risk.booster.predict(encoded, pred_contrib=True))
    families = np.zeros((len(encoded), len(CAUSES)))
    for f, column in enumerate(risk.encoder.columns):
        families[:, CAUSES.index(risk.families[column])] += shap[:, f]
    return families, shap[:, -1]


def test_contributions_are_lightgbms_tree_shap(
    model: UpliftModel, predicted: pd.DataFrame, fresh: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    risk = _risk(model)
    encoded = risk.encoder.transform(fresh[0][list(model.inputs)])
    raw = np.asarray(risk.booster.predict(encoded, raw_score=True))
    logits = predicted[LOGITS].to_numpy()
    np.testing.assert_allclose(logits.sum(axis=1) + risk.expected_value, raw, rtol=0, atol=1e-9)
    families, expected = _lightgbm_families(risk, encoded.iloc[:3_000])
    np.testing.assert_allclose(logits[:3_000], families, rtol=0, atol=1e-9)
    np.testing.assert_allclose(expected, risk.expected_value, rtol=0, atol=1e-12)
    np.testing.assert_allclose(predicted["risk"], risk.calibrator.predict(raw), rtol=0, atol=1e-12)


def test_tree_shap_is_lightgbms_for_each_tree() -> None:
    """Our tree SHAP against LightGBM's pred_contrib, tree by tree, on splits that reuse an
    input along a path, categories, NaN sent either way, zeros and one-leaf trees."""
    rng = np.random.default_rng(5)
    n = 4_000
    X = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "c": pd.Categorical(rng.integers(0, 6, n)),
            "z": np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n)),
        }
    )
    logit = X["a"] * X["a"] - np.nan_to_num(X["b"].to_numpy()) + (X["c"].cat.codes % 2) - X["z"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(float)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "min_data_per_group": 20}
    params |= {"max_cat_to_onehot": 2, "cat_smooth": 1.0, "zero_as_missing": False}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=12)
    rows = X.iloc[:300].assign(c=X["c"].iloc[:300].cat.codes.astype(float)).to_numpy(float)
    rows[::7, 1] = np.nan
    rows[::5, 3] = 0.0
    rows[::9, 2] = np.nan
    trees = booster.dump_model()["tree_info"]
    assert any(
        len({n["split_feature"] for n in _nodes(t["tree_structure"])})
        < len(_nodes(t["tree_structure"]))
        for t in trees
    )  # some tree splits on an input twice
    for t, tree in enumerate(trees):
        ours = contributions_module.tree_shap(tree["tree_structure"], rows)
        theirs = booster.predict(rows, start_iteration=t, num_iteration=1, pred_contrib=True)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    one_leaf = {"leaf_index": 0, "leaf_value": 0.25, "leaf_count": 10}
    np.testing.assert_array_equal(
        contributions_module.tree_shap(one_leaf, rows[:3]), [[0, 0, 0, 0, 0.25]] * 3
    )


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "split_feature" not in node:
        return []
    return [node, *_nodes(node["left_child"]), *_nodes(node["right_child"])]


def test_missing_and_unseen_values_take_lightgbms_paths(model: UpliftModel) -> None:
    """NaN, zero, thresholds themselves, unseen categories: the tables follow LightGBM."""
    risk = _risk(model)
    world = simulate(2_000, seed=77).log
    odd = world.assign(
        stock_confidence=np.where(np.arange(2_000) % 3 == 0, np.nan, world["stock_confidence"]),
        dispatch_delay_days=np.where(np.arange(2_000) % 4 == 0, 0, world["dispatch_delay_days"]),
        hour=np.where(np.arange(2_000) % 5 == 0, np.nan, world["hour"]),
        payment_status=np.where(np.arange(2_000) % 7 == 0, "voucher", world["payment_status"]),
        order_value=np.where(np.arange(2_000) % 11 == 0, 0.0, world["order_value"]),
    )
    encoded = risk.encoder.transform(odd[list(model.inputs)])
    families, _ = _lightgbm_families(risk, encoded)
    np.testing.assert_allclose(risk.contributions(encoded), families, rtol=0, atol=1e-9)


def test_without_tables_lightgbm_computes_the_same(
    model: UpliftModel, fresh: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = fresh[0].iloc[:2_000]
    expected = model.predict_risk(orders)
    monkeypatch.setattr(contributions_module, "compiled", lambda: None)
    plain = dataclasses.replace(model, risk_model=dataclasses.replace(_risk(model)))
    pd.testing.assert_frame_equal(plain.predict_risk(orders), expected, rtol=0, atol=1e-9)
    assert plain.risk_model._cause_tables is None  # type: ignore[union-attr]


def test_dominant_cause_known_values() -> None:
    logits = np.array(
        [
            [0.5, 0.1, -0.2, 0.0, 0.4, 0.0],
            [-0.1, -0.3, 0.0, -0.2, -0.5, -0.1],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.3],
        ]
    )
    cause, share = dominant_cause(logits)
    assert list(cause) == ["payment", NO_CAUSE, "other"]
    np.testing.assert_allclose(share, [0.5 / 1.0, np.nan, 1.0])


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def test_platt_recovers_a_known_logistic_map() -> None:
    rng = np.random.default_rng(0)
    score = rng.normal(-2.0, 1.0, 200_000)
    y = (rng.random(len(score)) < 1 / (1 + np.exp(-(0.7 * score + 0.4)))).astype(float)
    fitted = fit_platt(score, y, np.ones(len(y)))
    assert fitted.slope == pytest.approx(0.7, abs=0.03)
    assert fitted.intercept == pytest.approx(0.4, abs=0.06)
    assert log_loss(y, fitted.predict(score)) < log_loss(
        y, PlattCalibrator(1.0, 0.0).predict(score)
    )


def test_isotonic_is_monotone_and_ece_has_known_values() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(size=5_000)
    y = (rng.random(5_000) < np.where(score > 0.5, 0.6, 0.05)).astype(float)
    fitted = fit_isotonic(score, y, np.ones(5_000))
    grid = np.linspace(-4, 4, 101)
    assert np.all(np.diff(fitted.predict(grid)) >= 0)
    assert fitted.predict(grid).min() >= 0
    assert fitted.predict(grid).max() <= 1
    again = calibrator_from_dict(json.loads(json.dumps(fitted.to_dict())))
    np.testing.assert_array_equal(again.predict(grid), fitted.predict(grid))
    curve = reliability(np.array([0.1, 0.1, 0.3, 0.3]), np.array([0.0, 0.0, 1.0, 0.0]), bins=2)
    assert curve["orders"].tolist() == [2, 2]
    assert expected_calibration_error(curve) == pytest.approx((0.1 + 0.2) / 2)


def test_the_calibration_with_the_lower_cross_validated_log_loss_is_chosen() -> None:
    rng = np.random.default_rng(2)
    score = rng.uniform(-3, 3, 20_000)
    step = (rng.random(20_000) < np.where(score > 0, 0.6, 0.05)).astype(float)
    smooth = (rng.random(20_000) < 1 / (1 + np.exp(-score))).astype(float)
    fold = np.arange(20_000) % 2
    weight = np.ones(20_000)
    stepped, report = choose_calibrator(score, step, weight, fold)
    assert report.method == "isotonic"
    assert report.log_loss_isotonic < report.log_loss_platt
    assert isinstance(stepped, IsotonicCalibrator)
    assert report.ece < 0.02
    logistic, report = choose_calibrator(score, smooth, weight, fold)
    assert report.method == "platt"
    assert isinstance(logistic, PlattCalibrator)
    assert CalibrationReport.from_dict(json.loads(json.dumps(report.to_dict()))).to_dict() == (
        report.to_dict()
    )


def test_card_records_the_calibration(model: UpliftModel, tmp_path: Path) -> None:
    card = read_card(save_model(model, tmp_path / "m"))["risk"]
    calibration = card["calibration"]
    assert card["fitted"] is True
    assert calibration["method"] in ("platt", "isotonic")
    chosen = calibration[f"log_loss_{calibration['method']}"]
    assert chosen == min(calibration["log_loss_platt"], calibration["log_loss_isotonic"])
    assert calibration["folds"] == 2
    assert calibration["ece_bins"] == 10
    curve = pd.DataFrame(calibration["reliability"])
    assert len(curve) == 10
    assert curve["orders"].sum() == calibration["orders_calibration"]
    assert calibration["ece"] == pytest.approx(
        np.average((curve["mean_predicted"] - curve["observed"]).abs(), weights=curve["weight"])
    )
    control = 60_000 * 0.2
    assert calibration["orders_calibration"] == pytest.approx(0.25 * control, rel=0.1)
    assert calibration["orders_fitted"] == pytest.approx(0.75 * control, rel=0.1)
    assert card["families"]["payment_status"] == "payment"
    assert card["families"]["category"] == "other"
    assert card["expected_value"] == _risk(model).expected_value


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def test_round_trip_predicts_the_same(
    model: UpliftModel, fresh: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    folder = save_model(model, tmp_path / "m")
    assert "risk_model-0.lgbm.txt" in read_card(folder)["files"]
    assert not list(folder.glob("*.pkl"))
    loaded = load_model(folder, digest=model_digest(folder))
    orders = fresh[0].iloc[:20_000]
    pd.testing.assert_frame_equal(
        loaded.predict_risk(orders), model.predict_risk(orders), rtol=0, atol=1e-12
    )
    assert _risk(loaded).families == _risk(model).families
    assert read_card(save_model(loaded, tmp_path / "again"))["risk"] == read_card(folder)["risk"]


def test_digest_and_checksums_cover_the_risk_booster(model: UpliftModel, tmp_path: Path) -> None:
    folder = save_model(model, tmp_path / "m")
    digest = model_digest(folder)
    booster = folder / "risk_model-0.lgbm.txt"
    booster.write_bytes(booster.read_bytes().replace(b"leaf_value=", b"leaf_value=1", 1))
    assert model_digest(folder) != digest
    with pytest.raises(ModelLoadError, match=r"risk_model-0\.lgbm\.txt: checksum does not match"):
        load_model(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["risk_model"].update({"class": "os.system"}), "is not RiskModel"),
        (lambda p: p["risk_model"]["families"].update({"hour": "weather"}),
         "families must give each input one of"),
        (lambda p: p["risk_model"].update({"calibrator": {"method": "pickle"}}),
         "calibrator method must be one of"),
        (lambda p: p["risk_model"]["calibrator"].update({"method": "isotonic", "scores": [1, 0],
                                                          "probabilities": [0.1, 0.2]}),
         "must not decrease"),
        (lambda p: p["risk_model"]["report"].update({"ece": "low"}), "ece must be a finite number"),
        (lambda p: p["risk_model"].update({"boosters": ["../risk.txt"]}),
         "is not a booster file name"),
        (lambda p: p["risk_model"].update({"boosters": ["retained_model-0.lgbm.txt"] * 2}),
         "2 boosters; the model needs 1"),
    ],
)  # fmt: skip
def test_edited_risk_model_is_refused(
    model: UpliftModel, tmp_path: Path, change: Any, message: str
) -> None:
    folder = save_model(model, tmp_path / "m")
    edit_model_json(folder, change)
    with pytest.raises(ModelLoadError, match=message):
        load_model(folder)


def test_a_regression_booster_is_refused_as_risk_model(model: UpliftModel, tmp_path: Path) -> None:
    risk = _risk(model)
    encoded = risk.encoder.transform(simulate(3_000, seed=3).log[list(model.inputs)])
    regression = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 3},
        lgb.Dataset(encoded, label=np.arange(3_000.0)),
        num_boost_round=2,
    )
    folder = save_model(
        dataclasses.replace(model, risk_model=dataclasses.replace(risk, booster=regression)),
        tmp_path / "m",
    )
    with pytest.raises(ModelLoadError, match="its booster is not a binary classifier"):
        load_model(folder)


def test_a_model_saved_without_risk_model_says_to_retrain(
    model: UpliftModel, fresh: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """A folder written before risk models existed: no risk_model in model.json."""
    folder = save_model(dataclasses.replace(model, risk_model=None), tmp_path / "m")
    assert "risk_model" not in json.loads((folder / "model.json").read_text())
    loaded = load_model(folder)
    assert loaded.risk_model is None
    assert read_card(folder)["risk"]["fitted"] is False
    with pytest.raises(SchemaError, match="trained without a risk model; retrain it"):
        loaded.predict_risk(fresh[0].iloc[:10])


# --------------------------------------------------------------------------------------------
# Logs without a risk model, and the family map
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("learner", "beside"), [("t_lgbm", True), ("causalml_t", False)])
def test_the_risk_model_fits_beside_our_learners_only(
    learner: str, beside: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside our learners (every LightGBM call on one thread) the risk model fits in a second
    thread; beside causalml's, whose LightGBM calls set other thread counts, it waits."""
    threads = []

    def recording(*args: Any, **kwargs: Any) -> RiskModel:
        threads.append(threading.current_thread() is threading.main_thread())
        return fit_risk(*args, **kwargs)

    monkeypatch.setattr(training_module, "fit_risk", recording)
    log = ExperimentLog.from_frame(simulate(3_000, seed=4).log)
    model = train_uplift(log, learner=learner, seed=0)
    assert model.risk_model is not None
    assert threads == [not beside]


def test_revenue_only_log_has_no_risk_model(tmp_path: Path) -> None:
    frame = simulate(4_000, weeks=2, seed=4).log.drop(columns=["cancelled", "order_value"])
    revenue_log = ExperimentLog.from_frame(frame)
    model = train_uplift(revenue_log, learner="t_lgbm")
    assert model.risk_model is None
    with pytest.raises(SchemaError, match=r"no 0/1 outcome \(retained or cancelled\)"):
        model.predict_risk(revenue_log.frame)
    card = read_card(save_model(model, tmp_path / "m"))
    assert card["risk"]["fitted"] is False
    assert "no 0/1 outcome" in card["risk"]["reason"]
    assert load_model(tmp_path / "m").risk_model is None


def test_a_control_arm_without_cancellations_has_no_risk_model() -> None:
    frame = simulate(3_000, weeks=1, seed=5).log
    control = frame["arm"] == "control"
    frame.loc[control, "cancelled"] = 0
    frame.loc[control, "revenue"] = frame.loc[control, "order_value"]
    model = train_uplift(ExperimentLog.from_frame(frame), learner="t_lgbm")
    assert model.risk_model is None
    assert "the control arm has 0 cancelled" in model.training["risk_absent"]
    with pytest.raises(SchemaError, match="the control arm has 0 cancelled"):
        model.predict_risk(frame)


def test_the_family_map_comes_from_the_project() -> None:
    log = ExperimentLog.from_frame(simulate(4_000, weeks=1, seed=6).log)
    model = train_uplift(
        log, learner="t_lgbm", causes={"payment": ["device"], "fulfilment": ["category"]}
    )
    families = _risk(model).families
    assert families["device"] == "payment"
    assert families["category"] == "fulfilment"
    assert families["payment_status"] == "payment"
    with pytest.raises(ConfigError, match="unknown family 'weather'"):
        train_uplift(log, learner="t_lgbm", causes={"weather": ["hour"]})
