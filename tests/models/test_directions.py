"""Known directions: the tree models follow them, the card keeps them, bad ones are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.models.model_files import edit_model_json
from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import ConfigError
from uplift.models import load_model, read_card, save_model, train_uplift
from uplift.models.blend import BlendLearner
from uplift.models.learners import DRLearner, OutcomeLearner, SLearner, TLearner
from uplift.models.linear import LinearLearner
from uplift.models.uplift_model import model_inputs

# The simulator's own: a longer delay and more edits make a cancellation likelier, stock
# confidence less likely (uplift.data.simulate._causes).
KNOWN = {"dispatch_delay_days": "down", "order_edits": "down", "stock_confidence": "up"}
SIGNS = {"dispatch_delay_days": -1, "order_edits": -1, "stock_confidence": 1}


@pytest.fixture(scope="module")
def log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(4_000, weeks=2, seed=5).log)


def _fit(learner: OutcomeLearner, log: ExperimentLog) -> OutcomeLearner:
    frame = log.frame
    X = frame[list(model_inputs(log))]
    return learner.fit(X, frame["retained"], arm=frame["arm"], propensity=frame["propensity"])


def _sweep(log: ExperimentLog, column: str, orders: int = 40) -> pd.DataFrame:
    """``orders`` orders, each repeated with ``column`` set to every value of a grid over its
    range (rows: order by order, the grid in rising order within each)."""
    X = log.frame[list(model_inputs(log))].iloc[:orders]
    values = np.linspace(log.frame[column].min(), log.frame[column].max(), 25)
    rows = X.loc[X.index.repeat(len(values))].reset_index(drop=True)
    rows[column] = np.tile(values, orders).astype(X[column].dtype)
    return rows


def _worst_step(outcomes: pd.DataFrame, sign: int, steps: int = 25) -> float:
    """The largest step against ``sign`` along any order's sweep, under any arm (0 if none)."""
    values = outcomes.to_numpy().reshape(-1, steps, outcomes.shape[1])
    against = -sign * np.diff(values, axis=1)
    return float(against.max())


@pytest.mark.parametrize(
    "learner",
    [SLearner(n_bags=2), TLearner(), LinearLearner(), BlendLearner(n_bags=2)],
    ids=["s", "t", "linear", "blend"],
)
def test_the_outcome_models_follow_the_directions_under_every_arm(
    log: ExperimentLog, learner: OutcomeLearner
) -> None:
    held = _fit(type(learner)(**{**learner.get_params(), "directions": SIGNS}), log)
    for column, sign in SIGNS.items():
        sweep = _sweep(log, column)
        assert _worst_step(held.predict_outcomes(sweep), sign) <= 1e-12
    if isinstance(learner, LinearLearner):
        return  # its bounds are checked against another solver in test_interacted.py
    # The same fit without them steps against at least one direction: the check can fail.
    free = _fit(learner, log)
    steps = [_worst_step(free.predict_outcomes(_sweep(log, c)), s) for c, s in SIGNS.items()]
    assert max(steps) > 1e-3


def test_the_dr_learner_holds_its_outcome_models_not_its_effect_models() -> None:
    dr = DRLearner(directions={"stock_confidence": 1})
    assert dr._params(binary=True, n_rows=1_000)["directions"] == {"stock_confidence": 1}
    assert "directions" not in dr._params(binary=False, n_rows=1_000, outcome=False)


def test_train_keeps_them_in_the_card_and_the_risk_goes_the_other_way(
    log: ExperimentLog, tmp_path: Path
) -> None:
    model = train_uplift(log, learner="s_lgbm", directions=KNOWN)
    assert model.retained_model.directions == SIGNS
    save_model(model, tmp_path / "m")
    assert read_card(tmp_path / "m")["training"]["directions"] == KNOWN
    loaded = load_model(tmp_path / "m")
    assert loaded.retained_model.directions == SIGNS
    sweep = _sweep(log, "dispatch_delay_days")
    risk = model.risk_model.predict(sweep)[["risk"]]
    assert _worst_step(risk, +1) <= 1e-12  # a longer delay: never a lower risk


def test_a_model_saved_before_directions_loads_without_them(
    log: ExperimentLog, tmp_path: Path
) -> None:
    model = train_uplift(log, learner="t_lgbm")
    save_model(model, tmp_path / "m")

    def older(payload: dict[str, Any]) -> None:
        del payload["retained_model"]["params"]["directions"]

    edit_model_json(tmp_path / "m", older)
    loaded = load_model(tmp_path / "m")
    assert loaded.retained_model.directions is None
    frame = log.frame.iloc[:200]
    pd.testing.assert_frame_equal(
        loaded.predict_effects(frame).uplift("retained"),
        model.predict_effects(frame).uplift("retained"),
    )


@pytest.mark.parametrize(
    ("directions", "learner", "message"),
    [
        ({"dispatch_delay_days": "sideways"}, "s_lgbm", "a direction is up or down"),
        ({"no_such_column": "up"}, "s_lgbm", "has no model input 'no_such_column'"),
        ({"payment_status": "up"}, "s_lgbm", "'payment_status' of .* is not a number"),
        ({"order_edits": "down"}, "causalml_t", "learner causalml_t does not take known"),
        ({"order_edits": "down"}, "econml_dr", "learner econml_dr does not take"),
    ],
)
def test_bad_directions_are_refused_before_any_fit(
    log: ExperimentLog, directions: dict[str, str], learner: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        train_uplift(log, learner=learner, directions=directions)
