"""Our tree evaluator (uplift.models.trees) against LightGBM's own predict, split kind by kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import Booster

from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.models import load_model, save_model, train_uplift
from uplift.models import trees as trees_module
from uplift.models.base import FeatureEncoder
from uplift.models.learners import ARM_FEATURE, SLearner, TLearner, lgbm_params, train_lgbm
from uplift.models.trees import Forest, predict_arms, predict_boosters
from uplift.models.uplift_model import ControlOutcomeModel, model_inputs

# Leaves are summed in LightGBM's order, so the values agree to the last bit here; 1e-12 leaves
# room for an exp() of another libm in the sigmoid (an ulp is 1e-16), and nothing more.
TOLERANCE = 1e-12
LEVELS = list("abcdefgh")  # more than max_cat_to_onehot: many-vs-many category splits


def _raw(n: int, seed: int) -> pd.DataFrame:
    """Features of every kind: NaN in training or not, many zeros, categories with missing."""
    rng = np.random.default_rng(seed)
    with_nan = rng.normal(size=n)
    with_nan[rng.random(n) < 0.15] = np.nan
    small = pd.Series(rng.choice(["x", "y", "z"], n), dtype="str")  # one-vs-rest splits
    return pd.DataFrame(
        {
            "with_nan": with_nan,
            "no_nan": rng.normal(size=n),
            "zeros": np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n)),
            "count": rng.integers(0, 6, n).astype(float),
            "many": pd.Series(rng.choice(LEVELS, n), dtype="str").mask(rng.random(n) < 0.1),
            "small": small,
        }
    )


def _target(raw: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    score = (
        np.nan_to_num(raw["with_nan"], nan=1.5)
        + raw["no_nan"]
        - 2 * (raw["zeros"] == 0)
        + raw["count"] / 3
        + raw["many"].isin(["b", "e", "g"]) * 1.5
        - raw["many"].isna()
        + (raw["small"] == "y")
    )
    return (rng.random(len(raw)) < 1 / (1 + np.exp(-score))).astype(float)


def _edges(booster: Booster, raw: pd.DataFrame) -> pd.DataFrame:
    """Rows on and beside every threshold, plus NaN, zeros, tiny, infinite and unseen values."""
    columns = [c for c in raw.columns if pd.api.types.is_float_dtype(raw[c])]
    specials = [np.nan, 0.0, -0.0, 1e-36, -1e-36, trees_module.ZERO, -trees_module.ZERO]
    specials += [np.inf, -np.inf, 1e300]
    rows = []
    for node in _nodes(booster):
        name = booster.feature_name()[node["split_feature"]]
        if node["decision_type"] == "<=":
            t = float(node["threshold"])
            values = [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), *specials]
            rows += [(name, v) for v in values]
    rows += [(c, v) for c in columns for v in specials]
    edges = raw.sample(len(rows), replace=True, random_state=0).reset_index(drop=True)
    for i, (name, value) in enumerate(rows):
        edges.loc[i, name] = value
    unseen = edges.index % 3 == 0
    edges.loc[unseen, "many"] = "unseen"  # a level fit never saw: missing
    edges.loc[edges.index % 3 == 1, "small"] = None
    return pd.concat([edges, raw.head(300)], ignore_index=True)


def _nodes(booster: Booster) -> list[dict]:
    found = []

    def walk(node: dict) -> None:
        if "split_feature" in node:
            found.append(node)
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return found


def _booster(
    raw: pd.DataFrame, *, binary: bool, zero_as_missing: bool = False
) -> tuple[FeatureEncoder, Booster]:
    encoder = FeatureEncoder().fit(raw)
    params = lgbm_params(
        binary=binary, learning_rate=0.2, num_leaves=7, min_child_samples=20, n_jobs=1, seed=0
    )
    params["zero_as_missing"] = zero_as_missing
    y = _target(raw, 1) if binary else _target(raw, 1) * 10 + raw["no_nan"].to_numpy()
    return encoder, train_lgbm(params, encoder.transform(raw), y, 30)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return _raw(3_000, 0)


@pytest.fixture(scope="module")
def small_log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(2_500, weeks=2, seed=5).log)


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "regression"])
@pytest.mark.parametrize("zero_as_missing", [False, True], ids=["nan-or-none", "zero"])
def test_every_split_kind_equals_lightgbm(
    raw: pd.DataFrame, binary: bool, zero_as_missing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder, booster = _booster(raw, binary=binary, zero_as_missing=zero_as_missing)
    nodes = _nodes(booster)
    kinds = {(n["decision_type"], n["missing_type"]) for n in nodes}
    expected = {("<=", "Zero")} if zero_as_missing else {("<=", "NaN"), ("<=", "None")}
    assert expected <= kinds  # the missing types this case is about are really there
    assert any("||" in str(n["threshold"]) for n in nodes if n["decision_type"] == "==")
    assert Forest.of([booster]) is not None  # the tables, not the fallback, are tested
    X = encoder.transform(_edges(booster, raw))
    monkeypatch.setattr(trees_module, "CHUNK", 700)  # several chunks, so the threads share
    for threads in (1, 2):
        _close(predict_boosters([booster], X, threads)[:, 0], booster.predict(X))


def test_categories_missing_in_training_or_not(raw: pd.DataFrame) -> None:
    # "many" has missing values in training, "small" none: both send missing and unseen right.
    encoder, booster = _booster(raw, binary=True)
    test = _raw(500, 9)
    test.loc[::4, "many"] = None
    test.loc[1::4, "small"] = "unseen"
    test.loc[2::4, "small"] = None
    X = encoder.transform(test)
    assert X["small"].isna().sum() > 200
    _close(predict_boosters([booster], X, 2)[:, 0], booster.predict(X))


def test_several_boosters_share_one_pass(raw: pd.DataFrame) -> None:
    encoder, binary = _booster(raw, binary=True)
    _, regression = _booster(raw, binary=False)
    X = encoder.transform(_raw(700, 3))
    both = predict_boosters([binary, regression, binary], X, 2)
    expected = np.column_stack([binary.predict(X), regression.predict(X), binary.predict(X)])
    _close(both, expected)


def test_fallback_without_numba_agrees(raw: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, booster = _booster(raw, binary=True)
    X = encoder.transform(_edges(booster, raw))
    ours = predict_boosters([booster], X, 2)
    monkeypatch.setattr(trees_module, "compiled", lambda: None)
    fallback = predict_boosters([booster], X, 2)
    _close(fallback[:, 0], booster.predict(X))
    _close(ours, fallback)


def test_what_the_tables_do_not_mirror_is_left_to_lightgbm(
    raw: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = FeatureEncoder().fit(raw)
    X = encoder.transform(raw)
    params = {"objective": "poisson", "num_leaves": 7, "verbose": -1, "seed": 0}
    poisson = train_lgbm(params, X, _target(raw, 1) * 3, 10)
    assert Forest.of([poisson]) is None
    _close(predict_boosters([poisson], X, 2)[:, 0], poisson.predict(X))
    _, booster = _booster(raw, binary=True)
    monkeypatch.setattr(trees_module, "MAX_TABLE", 2)  # every tree too large
    assert Forest.of([booster]) is None
    _close(predict_boosters([booster], X, 2)[:, 0], booster.predict(X))


def test_zero_rows_and_one_row(raw: pd.DataFrame) -> None:
    encoder, booster = _booster(raw, binary=True)
    X = encoder.transform(raw)
    assert predict_boosters([booster, booster], X.iloc[:0], 2).shape == (0, 2)
    assert predict_arms([booster], X.iloc[:0], ARM_FEATURE, 3, 2).shape == (0, 3)
    _close(predict_boosters([booster], X.iloc[[7]], 2)[:, 0], booster.predict(X.iloc[[7]]))


def _per_arm(booster: Booster, X: pd.DataFrame, arms: int) -> np.ndarray:
    categories = pd.Index(range(arms))
    return np.column_stack(
        [
            booster.predict(
                X.assign(**{ARM_FEATURE: pd.Categorical.from_codes([a] * len(X), categories)})
            )
            for a in range(arms)
        ]
    )


def test_s_learner_all_arms_at_once_equal_lightgbm_per_arm(
    small_log: ExperimentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = small_log.frame
    X = frame[list(model_inputs(small_log))]
    model = SLearner(min_child_samples=20, n_bags=2).fit(
        X, frame["retained"], arm=frame["arm"], propensity=frame["propensity"]
    )
    encoded = model.encoder_.transform(X)
    arms = 1 + len(model.treatment_arms_)
    assert any(Forest.of(model.models_).input_feature == X.shape[1])  # some tree splits on it
    alone = [predict_arms([booster], encoded, ARM_FEATURE, arms, 2) for booster in model.models_]
    for booster, prediction in zip(model.models_, alone, strict=True):
        _close(prediction, _per_arm(booster, encoded, arms))
    # The kernel adds the bags in order, then divides: the floats of the numpy below.
    mean = predict_arms(model.models_, encoded, ARM_FEATURE, arms, 2)
    np.testing.assert_array_equal(mean, (alone[0] + alone[1]) / 2)
    ours = model.predict_outcomes(X)
    monkeypatch.setattr(trees_module, "compiled", lambda: None)
    fallback = model.predict_outcomes(X)
    _close(ours.to_numpy(), fallback.to_numpy())


def test_t_learner_and_control_outcome_model_equal_lightgbm(small_log: ExperimentLog) -> None:
    frame = small_log.frame
    X = frame[list(model_inputs(small_log))]
    model = TLearner(min_child_samples=20).fit(
        X, frame["revenue"], arm=frame["arm"], propensity=frame["propensity"]
    )
    encoded = model.encoder_.transform(X)
    expected = np.column_stack([b.predict(encoded) for b in model.models_])
    _close(model.predict_outcomes(X).to_numpy(), expected)
    base = ControlOutcomeModel.fit(small_log, "retained", seed=0)
    _close(base.predict(X), base.booster.predict(base.encoder.transform(X)))
    assert base.predict(X.iloc[:0]).shape == (0,)


@pytest.mark.parametrize("learner", ["s_lgbm", "t_lgbm", "dr_lgbm"])
def test_a_model_loaded_from_disk_predicts_the_same(
    small_log: ExperimentLog, learner: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = train_uplift(small_log, learner=learner)
    folder = save_model(model, tmp_path_factory.mktemp("model") / "m")
    files = sorted(p.name for p in folder.iterdir())
    loaded = load_model(folder)
    frame = small_log.frame
    ours = loaded.predict_effects(frame).to_frame()
    pd.testing.assert_frame_equal(ours, model.predict_effects(frame).to_frame(), rtol=0, atol=0)
    retained, X = loaded.retained_model, frame[list(loaded.inputs)]
    if isinstance(retained, TLearner):
        encoded = retained.encoder_.transform(X)
        expected = np.column_stack([b.predict(encoded) for b in retained.models_])
        _close(retained.predict_outcomes(X).to_numpy(), expected)
    assert loaded.predict_effects(frame.iloc[:0]).to_frame().empty
    assert sorted(p.name for p in folder.iterdir()) == files  # nothing compiled lands there


def test_encoder_codes_do_not_depend_on_the_string_storage() -> None:
    fit = pd.DataFrame({"c": pd.Series(["b", "a", None, "c"], dtype="str")})
    encoder = FeatureEncoder().fit(fit)
    values = ["c", None, "zz", "a", "b", np.nan]
    expected = [2, -1, -1, 0, 1, -1]  # unseen and missing: -1
    for dtype in ["str", "string", pd.StringDtype("python"), object]:
        codes = encoder.transform(pd.DataFrame({"c": pd.Series(values, dtype=dtype)}))["c"]
        assert codes.cat.codes.tolist() == expected, dtype
        assert list(codes.cat.categories) == ["a", "b", "c"]
