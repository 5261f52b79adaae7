"""The engine's two ways of scoring orders give the same numbers.

A call of a few orders is scored from its arrays (:mod:`uplift.serve.fastpath`), a large one
through the model's DataFrame methods (``predict_effects``, ``predict_risk``). Both are run
here on the same orders, alone and in batches, for every learner the array path mirrors, with
costs and vouchers, missing values and levels the model never saw; net values, risk and cause
must agree to 1e-9. Each world's predictions differ from order to order, so agreeing is not
trivially true of constant outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.loop.store import ModelRecord, Store
from uplift.models import model_digest, read_card, save_model, train_uplift
from uplift.serve import scoring
from uplift.serve.engine import DecisionEngine
from uplift.serve.journal import Journal
from uplift.serve.orders import prepare
from uplift.serve.scoring import Deployed, deploy, predict, predict_frame
from uplift.serve.settings import ServeSettings

COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
# A voucher is paid only on kept orders: it brings the retention level into the net value.
SETTINGS = ServeSettings(costs=COSTS, vouchers={"reassurance": 2.0, "agent_call": 1.5})
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Served:
    deployed: Deployed
    orders: list[dict[str, Any]]
    store: Path


def serve_model(folder: Path, learner: str, *, order_value: bool = True) -> Served:
    frame = simulate(3000, weeks=1, seed=3, world="easy").log
    if not order_value:  # revenue uplift then comes from a revenue learner
        frame = frame.drop(columns="order_value")
    model = train_uplift(ExperimentLog.from_frame(frame), learner=learner, costs=COSTS)
    path = save_model(model, folder / "model")
    store = Store(folder / "uplift.duckdb")
    record = ModelRecord(
        "m1", "2026-W40", learner, str(path), read_card(path), 1.0, 0.1, "2026-W40",
        model_digest(path),
    )  # fmt: skip
    store.register_model(record)
    orders = simulate(400, weeks=1, seed=8, world="easy").log[["order_id", *model.inputs]]
    records = odd_orders(orders.to_dict("records"))
    return Served(deploy(record, SETTINGS), records, store.path)


def odd_orders(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders as clients send them, some with missing values, unseen levels or numbers as
    texts (each kind on a few orders)."""
    for k, order in enumerate(records):
        if k % 7 == 1:
            order["device"] = None
        if k % 11 == 2:
            order["payment_method"] = "crypto"  # a level the model never saw
        if k % 13 == 3:
            order["stock_confidence"] = None
        if k % 17 == 4:
            order["prior_orders"] = str(order["prior_orders"])
        if k % 19 == 5:
            order["category"] = 7  # a number where the model read texts
    return records


@pytest.fixture(
    scope="module",
    params=[("s_lgbm", True), ("t_lgbm", True), ("dr_lgbm", True), ("t_lgbm", False)],
    ids=["s_lgbm", "t_lgbm", "dr_lgbm", "t_lgbm-revenue"],
)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Served:
    learner, order_value = request.param
    return serve_model(tmp_path_factory.mktemp(learner), learner, order_value=order_value)


def both_paths(served: Served, orders: list[dict[str, Any]]) -> tuple[Any, Any]:
    deployed = served.deployed
    batch = prepare(orders, deployed.model.inputs, deployed.numeric, "salt")
    assert deployed.arrays is not None
    arrays = deployed.arrays.predict(batch.inputs.columns, len(batch.inputs))
    assert arrays is not None  # the array path scored them: nothing was left to the frame
    return arrays, predict_frame(deployed.model, batch.inputs.frame(), SETTINGS)


def assert_same(arrays: Any, frame: Any) -> None:
    (value, risk, cause), (value_f, risk_f, cause_f) = arrays, frame
    assert value.shape == value_f.shape
    np.testing.assert_allclose(value, value_f, rtol=0, atol=TOLERANCE)
    assert risk is not None
    assert risk_f is not None
    np.testing.assert_allclose(risk, risk_f, rtol=0, atol=TOLERANCE)
    assert cause is not None
    assert cause_f is not None
    assert cause.tolist() == cause_f.tolist()


def test_a_batch_scores_the_same_both_ways(served: Served) -> None:
    arrays, frame = both_paths(served, served.orders)
    assert_same(arrays, frame)
    value, risk, cause = frame
    # Orders differ: equal outputs are not those of a constant.
    assert np.unique(value.round(6), axis=0).shape[0] > len(served.orders) // 2
    assert np.unique(risk.round(6)).size > len(served.orders) // 2
    assert len(set(cause.tolist())) >= 3
    assert (value > 0).any()
    assert (value < 0).any()


def test_single_orders_score_the_same_both_ways(served: Served) -> None:
    for order in served.orders[:60]:
        assert_same(*both_paths(served, [order]))


def test_the_engine_decides_the_same_on_both_paths(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServeSettings(costs=COSTS, vouchers=SETTINGS.vouchers, holdout=0.1, explore=0.1)

    def decisions(folder: Path) -> pd.DataFrame:
        with Journal(folder / "journal.jsonl") as journal:
            engine = DecisionEngine.from_store(served.store, settings, journal)
            out = [d for o in served.orders[:40] for d in engine.decide([o])]
            out += engine.decide(served.orders[40:])
        return pd.DataFrame(out).set_index("order_id")

    fast = decisions(tmp_path / "arrays")
    monkeypatch.setattr(scoring, "ARRAY_PATH_MAX_ROWS", 0)  # every call through the frames
    slow = decisions(tmp_path / "frames")
    assert fast["arm"].tolist() == slow["arm"].tolist()
    assert fast["reason"].tolist() == slow["reason"].tolist()
    assert fast["cause"].tolist() == slow["cause"].tolist()
    for column in ("net_value", "propensity", "risk"):
        np.testing.assert_allclose(fast[column], slow[column], rtol=0, atol=TOLERANCE)
    assert fast["arm"].nunique() >= 2


def test_predict_takes_the_frame_path_past_the_array_path_size(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = served.deployed
    batch = prepare(served.orders[:5], deployed.model.inputs, deployed.numeric, "salt")
    calls: list[int] = []

    def frame_path(model: Any, X: pd.DataFrame, settings: ServeSettings) -> Any:
        calls.append(len(X))
        return predict_frame(model, X, settings)

    monkeypatch.setattr(scoring, "predict_frame", frame_path)
    predict(deployed, batch.inputs, SETTINGS)
    assert calls == []
    monkeypatch.setattr(scoring, "ARRAY_PATH_MAX_ROWS", 4)
    predict(deployed, batch.inputs, SETTINGS)
    assert calls == [5]


def test_a_model_the_array_path_does_not_mirror_gets_the_frame_path(tmp_path: Path) -> None:
    linear = serve_model(tmp_path, "s_linear")
    assert linear.deployed.arrays is None
    batch = prepare(linear.orders, linear.deployed.model.inputs, linear.deployed.numeric, "s")
    value, _, _ = predict(linear.deployed, batch.inputs, SETTINGS)
    assert value.shape == (len(linear.orders), len(linear.deployed.arms))
