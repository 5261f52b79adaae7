"""The blend of the S-learner and the linear S-learner, and how selection scores it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.models import trees
from uplift.models.blend import BlendLearner
from uplift.models.catalog import make_learner
from uplift.models.effects import mean_effects
from uplift.models.training import train_uplift
from uplift.models.uplift_model import fit_models, model_inputs


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


def test_the_blends_effects_are_the_mean_of_its_members_effects(log: ExperimentLog) -> None:
    # Selection scores the blend from its members' held-out effects instead of refitting it.
    frame = log.frame.head(400)
    effects = {
        name: fit_models(log, name, seed=1).model().predict_effects(frame)
        for name in ("s_lgbm", "s_linear", "s_blend")
    }
    mean = mean_effects([effects["s_lgbm"], effects["s_linear"]])
    for outcome in ("retained", "revenue"):
        assert np.allclose(
            effects["s_blend"].uplift(outcome), mean.uplift(outcome), rtol=1e-9, atol=1e-12
        )
    assert np.allclose(effects["s_blend"].base, mean.base, rtol=1e-9)


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
    trees.forest_of.cache_clear()
    model.prepare()
    # The S-learner's bags (the blend's trees) now have their tables: the next prediction
    # finds them built.
    assert trees.forest_of.cache_info().currsize >= 1
    pd.testing.assert_frame_equal(model.predict_effects(log.frame).to_frame(), before)
