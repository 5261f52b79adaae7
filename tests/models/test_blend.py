"""The blend of the S-learner and the linear S-learner, and how selection scores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.models.model_files import copy_folder, edit_model_json
from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import ModelLoadError
from uplift.models import blend as blend_module
from uplift.models import load_model, save_model, trees
from uplift.models.blend import MAX_STRETCH, BlendLearner, stretch_for
from uplift.models.catalog import BLEND_MEMBERS, make_learner
from uplift.models.select import joined
from uplift.models.training import train_uplift
from uplift.models.uplift_model import UpliftModel, fit_models, model_inputs


@pytest.fixture(scope="module")
def log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(6_000, seed=5, world="easy").log)


def fit(name: str, log: ExperimentLog) -> pd.DataFrame:
    X = log.frame[list(model_inputs(log))]
    model = make_learner(name, seed=2)
    model.fit(X, log.frame["retained"], arm=log.frame["arm"], propensity=log.frame["propensity"])
    return model.predict_outcomes(X.head(500))


def test_the_blend_is_the_mean_of_its_members(log: ExperimentLog) -> None:
    trees, linear, blend = (fit(name, log) for name in ("s_lgbm", "s_linear", "s_blend"))
    assert np.allclose(blend, (trees + linear) / 2, rtol=0, atol=1e-12)
    assert not np.allclose(trees, linear, atol=1e-3)  # two different models, not one twice


def test_auto_scores_the_blend_without_fitting_it_and_keeps_it_unless_beaten(
    log: ExperimentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates = ("s_blend", "s_lgbm", "s_linear")
    fits = []
    real_fit = BlendLearner._fit
    monkeypatch.setattr(BlendLearner, "_fit", lambda self, data: fits.append(real_fit(self, data)))
    model = train_uplift(log, seed=0, candidates=candidates)
    # Only the final model, if it is the blend, is a fit of the blend (its retained model).
    assert len(fits) == (model.learner == "s_blend")
    selection = model.selection
    assert selection is not None
    scores = selection.scores.set_index("learner")
    assert list(scores.index) == list(candidates)
    # Its members' fits and the joining (its stretch's centre): never a fit of its own.
    assert scores.loc["s_blend", "fit_seconds"] >= (
        scores.loc["s_lgbm", "fit_seconds"] + scores.loc["s_linear", "fit_seconds"]
    )
    beaten = scores["clearly_better"].any()
    expected = (
        scores.loc[scores["clearly_better"], "policy_value"].idxmax() if beaten else "s_blend"
    )
    assert model.learner == selection.chosen == expected


def test_preparing_a_blend_model_builds_the_tables_of_its_trees_and_changes_no_number(
    log: ExperimentLog,
) -> None:
    model = train_uplift(log, "s_blend", seed=0)
    before = model.predict_effects(log.frame).to_frame()
    trees._forest_of.cache_clear()
    model.prepare()
    # The S-learner's bags (the blend's trees) now have their tables: the next prediction
    # finds them built.
    assert trees._forest_of.cache_info().currsize >= 1
    pd.testing.assert_frame_equal(model.predict_effects(log.frame).to_frame(), before)


def test_the_stretch_follows_the_logs_size() -> None:
    assert stretch_for(20_000) == 1.0
    assert stretch_for(200_000) == pytest.approx(MAX_STRETCH)
    assert stretch_for(63_246) == pytest.approx(1 + (MAX_STRETCH - 1) / 2, rel=1e-4)  # halfway
    assert stretch_for(1_000) == 1.0
    assert stretch_for(5_000_000) == pytest.approx(MAX_STRETCH)


def test_a_stretched_blend_is_the_mean_of_its_linear_member_and_its_stretched_trees(
    log: ExperimentLog,
) -> None:
    X = log.frame[list(model_inputs(log))]
    blend = BlendLearner(stretch=2.0, random_state=2)
    blend.fit(X, log.frame["retained"], arm=log.frame["arm"], propensity=log.frame["propensity"])
    encoded = blend.encoder_.transform(X)
    trees, linear = blend.trees_._outcome_matrix(encoded), blend.linear_._outcome_matrix(encoded)
    tree_uplift = trees[:, 1:] - trees[:, :1]
    # The centre: the trees' mean uplift per arm over the training orders (all of these).
    np.testing.assert_allclose(blend.tree_uplift_, tree_uplift.mean(axis=0), rtol=1e-12)
    stretched = trees.copy()
    stretched[:, 1:] = (
        trees[:, :1]
        + np.clip(
            trees[:, :1] + blend.tree_uplift_ + 2.0 * (tree_uplift - blend.tree_uplift_),
            0.0,
            1.0,
        )
        - trees[:, :1]
    )
    np.testing.assert_allclose(
        blend.predict_outcomes(X).to_numpy(), (stretched + linear) / 2, rtol=0, atol=1e-12
    )
    # In uplift: the linear member's, plus the trees' with their spread about the centre doubled.
    uplift = blend.predict(X).to_numpy()
    linear_uplift = linear[:, 1:] - linear[:, :1]
    expected = (linear_uplift + 2 * tree_uplift - blend.tree_uplift_) / 2
    unclipped = (stretched[:, 1:] > 0) & (stretched[:, 1:] < 1)
    np.testing.assert_allclose(uplift[unclipped], expected[unclipped], rtol=0, atol=1e-12)
    assert blend.stretch_ == 2.0
    assert np.std(tree_uplift) > 0.005  # trees that do vary, so the stretch changes numbers


def test_the_members_predicting_side_by_side_give_the_same_numbers(
    log: ExperimentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    X = log.frame[list(model_inputs(log))]
    blend = BlendLearner(stretch=1.5, random_state=2)
    blend.fit(X, log.frame["retained"], arm=log.frame["arm"], propensity=log.frame["propensity"])
    assert len(X) < blend_module.SIDE_BY_SIDE_ORDERS
    one_after_the_other = blend.predict_outcomes(X)
    # A million orders' path (the linear member in a thread) on these orders.
    monkeypatch.setattr(blend_module, "SIDE_BY_SIDE_ORDERS", 1)
    pd.testing.assert_frame_equal(blend.predict_outcomes(X), one_after_the_other, check_exact=True)


def test_selection_joins_the_blend_that_its_fit_gives(
    log: ExperimentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stretch other than 1 (this small log would get 1 by its size).
    monkeypatch.setattr(blend_module, "stretch_for", lambda orders: 1.7)
    fitted = fit_models(log, "s_blend", seed=3).retained
    members = [fit_models(log, name, seed=3) for name in BLEND_MEMBERS["s_blend"]]
    made = joined(log, "s_blend", members).retained
    assert isinstance(fitted, BlendLearner)
    assert isinstance(made, BlendLearner)
    assert made.stretch_ == fitted.stretch_ == 1.7
    np.testing.assert_allclose(made.tree_uplift_, fitted.tree_uplift_, rtol=0, atol=1e-15)
    X = log.frame[list(model_inputs(log))]
    pd.testing.assert_frame_equal(made.predict_outcomes(X), fitted.predict_outcomes(X))
    assert made.get_params() == fitted.get_params()


@pytest.fixture(scope="module")
def saved_blend(
    log: ExperimentLog, tmp_path_factory: pytest.TempPathFactory
) -> tuple[UpliftModel, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blend_module, "stretch_for", lambda orders: 1.8)
        model = train_uplift(log, "s_blend", seed=0)
    return model, save_model(model, tmp_path_factory.mktemp("models") / "m")


def test_a_saved_blend_keeps_its_stretch(
    saved_blend: tuple[UpliftModel, Path], log: ExperimentLog
) -> None:
    model, folder = saved_blend
    loaded = load_model(folder)
    blend = loaded.retained_model
    assert isinstance(blend, BlendLearner)
    assert blend.stretch_ == 1.8
    pd.testing.assert_frame_equal(
        loaded.predict_effects(log.frame).to_frame(), model.predict_effects(log.frame).to_frame()
    )


def test_a_blend_saved_before_the_stretch_loads_as_the_plain_mean(
    saved_blend: tuple[UpliftModel, Path], log: ExperimentLog, tmp_path: Path
) -> None:
    def older(payload: dict[str, Any]) -> None:
        del payload["retained_model"]["stretch"]
        del payload["retained_model"]["params"]["stretch"]

    folder = copy_folder(saved_blend[1], tmp_path / "m")
    edit_model_json(folder, older)
    blend = load_model(folder).retained_model
    assert isinstance(blend, BlendLearner)
    assert blend.stretch_ == 1.0
    assert blend.get_params()["stretch"] == 1.0
    X = blend.encoder_.transform(log.frame[list(model_inputs(log))])
    np.testing.assert_allclose(
        blend._outcome_matrix(X),
        (blend.trees_._outcome_matrix(X) + blend.linear_._outcome_matrix(X)) / 2,
        rtol=0,
        atol=1e-15,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(factor=0.0), "stretch needs a factor > 0"),
        (lambda s: s["tree_uplift"].pop(), r"a tree_uplift per arm \(5\)"),
        (lambda s: s.update(factor="2"), "factor must be a finite number"),
    ],
)
def test_a_damaged_stretch_is_refused(
    saved_blend: tuple[UpliftModel, Path], tmp_path: Path, change: Any, message: str
) -> None:
    folder = copy_folder(saved_blend[1], tmp_path / "m")
    edit_model_json(folder, lambda payload: change(payload["retained_model"]["stretch"]))
    with pytest.raises(ModelLoadError, match=rf"model\.json: .*{message}"):
        load_model(folder)
