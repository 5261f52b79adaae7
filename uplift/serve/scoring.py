"""Scoring orders for the engine: the deployed model, and its net values, risk and cause.

:func:`predict` takes one of two paths that give the same numbers (tests hold them to 1e-9):
the orders' arrays straight through the model's trees
(:class:`~uplift.serve.fastpath.ArrayScorer`), up to :data:`ARRAY_PATH_MAX_ROWS` orders; or
the model's own DataFrame methods (``predict_effects``, ``predict_risk``), as ``uplift rank``
scores orders, for larger calls, models the array path does not mirror and orders it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import ConfigError
from uplift.loop.store import ModelRecord
from uplift.loop.weekly import load_registered
from uplift.models.base import FeatureEncoder
from uplift.models.uplift_model import UpliftModel
from uplift.serve.combiner import Predicted
from uplift.serve.fastpath import ArrayScorer
from uplift.serve.orders import MAX_BATCH, OrderInputs
from uplift.serve.settings import ServeSettings

__all__ = [
    "ARRAY_PATH_MAX_ROWS",
    "Deployed",
    "Scores",
    "check_model",
    "deploy",
    "merge",
    "predict",
    "predict_frame",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Orders per call up to which the array path scores them. Measured (CPU ms a call, the
#: weekly job's S-learner of five bags and its risk model, benchmarks/results/serve.md):
#: 1 order 0.10 against 7.8 on the frame path; 100 orders 0.36 against 8.0; 1,000 orders 2.8
#: against 11.5; 10,000 orders 32 against 52. The frame path costs some 8 ms more a call and
#: no less an order, so the array path is the faster at every size the engine takes.
ARRAY_PATH_MAX_ROWS = MAX_BATCH


@dataclass(frozen=True, eq=False)
class Deployed:
    """A loaded champion: its record, the model, which inputs it reads as numbers, and its
    array scorer (None when the frame path scores every call)."""

    record: ModelRecord
    model: UpliftModel
    numeric: frozenset[str] | None
    arrays: ArrayScorer | None

    @property
    def arms(self) -> tuple[str, ...]:
        return self.model.treatment_arms


@dataclass(frozen=True, eq=False)
class Scores:
    """Predictions for some rows of a batch (positions ``rows``)."""

    model: Deployed
    rows: IntArray
    value: FloatArray
    risk: FloatArray | None
    cause: NDArray[np.object_] | None

    def at(self, rows: IntArray) -> Scores:
        """The scores of ``rows`` (positions in the batch, all scored), in that order."""
        order = np.argsort(self.rows, kind="stable")
        where = order[np.searchsorted(self.rows, rows, sorter=order)]
        return Scores(
            self.model,
            rows,
            self.value[where],
            None if self.risk is None else self.risk[where],
            None if self.cause is None else self.cause[where],
        )

    @classmethod
    def empty(cls, deployed: Deployed) -> Scores:
        """No rows: every order of the call has its standing decision."""
        has_risk = deployed.model.risk_model is not None
        return cls(
            deployed,
            np.empty(0, dtype=np.int64),
            np.empty((0, len(deployed.arms))),
            np.empty(0) if has_risk else None,
            np.empty(0, dtype=object) if has_risk else None,
        )


def merge(first: Scores, second: Scores) -> Scores:
    """The scores of both (rows of the same batch, none in both)."""

    def join(a: Any, b: Any) -> Any:
        return None if a is None or b is None else np.concatenate([a, b])

    return Scores(
        first.model,
        np.concatenate([first.rows, second.rows]),
        np.concatenate([first.value, second.value]),
        join(first.risk, second.risk),
        join(first.cause, second.cause),
    )


def predict(deployed: Deployed, inputs: OrderInputs, settings: ServeSettings) -> Predicted:
    """Net value per order and treatment arm, and risk and cause when the model has them."""
    if deployed.arrays is not None and len(inputs) <= ARRAY_PATH_MAX_ROWS:
        found = deployed.arrays.predict(inputs.columns, len(inputs))
        if found is not None:
            return found
    return predict_frame(deployed.model, inputs.frame(), settings)


def predict_frame(model: UpliftModel, X: pd.DataFrame, settings: ServeSettings) -> Predicted:
    """:func:`predict` through the model's DataFrame methods."""
    effects = model.predict_effects(X)
    value = effects.net_value(settings.costs, settings.vouchers).value
    risk = cause = None
    if model.risk_model is not None:
        scored = model.predict_risk(X)
        risk = scored["risk"].to_numpy(np.float64)
        cause = scored["cause"].astype(str).to_numpy(dtype=object)
    return np.asarray(value, dtype=np.float64), risk, cause


def deploy(record: ModelRecord, settings: ServeSettings) -> Deployed:
    """Load a registered model, check it against ``settings`` and prepare its scoring."""
    model = load_registered(record)
    _check(model, record.model_id, settings)
    arrays = ArrayScorer.of(model, settings.costs, settings.vouchers)
    return Deployed(record, model, _numeric_inputs(model), arrays)


def _numeric_inputs(model: UpliftModel) -> frozenset[str] | None:
    """The inputs the model's encoder reads as numbers (None when it has no encoder)."""
    candidates = [
        getattr(model.retained_model, "encoder_", None),
        getattr(model.revenue_model, "encoder_", None),
        None if model.risk_model is None else model.risk_model.encoder,
    ]
    for encoder in candidates:
        if isinstance(encoder, FeatureEncoder) and set(model.inputs) <= set(encoder.columns):
            return frozenset(c for c in model.inputs if c not in encoder.categories)
    return None


def check_model(deployed: Deployed, settings: ServeSettings) -> None:
    """Refuse settings naming arms the model does not know, and a model without revenue."""
    _check(deployed.model, deployed.record.model_id, settings)


def _check(model: UpliftModel, model_id: str, settings: ServeSettings) -> None:
    settings.check_arms(model.treatment_arms, model.control)
    if model.revenue_model is None and not model.revenue_from_order_value:
        raise ConfigError(
            f"model {model_id} predicts no revenue uplift (its log had neither "
            "revenue nor order_value); the service values arms in revenue: retrain with them"
        )
