"""Net value, risk and cause of orders straight from their arrays, without pandas.

The models' own methods (``UpliftModel.predict_effects``, ``predict_risk``) take a DataFrame,
encode it into another, read that back into arrays for the tree evaluator and return frames:
some 8 ms of pandas a call, whatever its size, against a tenth of a millisecond for the trees
of one order. :class:`ArrayScorer` takes the same steps on numpy arrays for the models whose
every part the tables of :mod:`uplift.models.trees` evaluate: our S-, T- and DR-learners on
LightGBM, and the risk model. It gives the numbers of the frame path (tests hold the two to
1e-9 on many orders). What it does not mirror is left to the frame path, which also says what
is wrong: :meth:`ArrayScorer.of` gives None for a model of another kind (a linear or causalml
learner, a booster LightGBM must predict itself), and :meth:`ArrayScorer.predict` gives None for
orders whose input does not have the kind the model was fitted on (a number where it read
texts) or whose prediction is not finite.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from uplift.models.base import BaseUpliftModel, FeatureEncoder
from uplift.models.contributions import CAUSE_LABELS, dominant_codes
from uplift.models.learners import DRLearner, SLearner, TLearner, predict_threads
from uplift.models.risk import RiskModel
from uplift.models.trees import Forest, arms_forest, boosters_forest
from uplift.models.uplift_model import UpliftModel
from uplift.serve.combiner import Predicted
from uplift.serve.orders import Column

__all__ = ["ArrayScorer"]

FloatArray = NDArray[np.float64]
# Inputs already read for a booster in this call, by (input, its text -> code map): the uplift
# and risk models usually read a text input the same way, and it is then looked up once.
_Memo = dict[tuple[str, int], FloatArray]

_CAUSES = np.array(CAUSE_LABELS, dtype=object)
# The tree evaluator's threads, as the models' own predict methods take them (asked once:
# os.cpu_count took 16 us, a tenth of the trees of one order).
_THREADS = predict_threads()


class _Unsupported(Exception):
    """The model has a part this module does not mirror: the frame path predicts it."""


@functools.lru_cache(maxsize=256)
def _shared_codes(items: tuple[tuple[str, float], ...]) -> dict[str, float]:
    return dict(items)


def _shared(codes: dict[str, float]) -> dict[str, float]:
    """One dict object per text -> code map: the uplift and risk models read a text input
    alike, and a call then looks its texts up once (:data:`_Memo` goes by the dict)."""
    return _shared_codes(tuple(codes.items()))


@dataclass(frozen=True, eq=False)
class _Encoding:
    """``FeatureEncoder.transform`` and then :func:`~uplift.models.trees.feature_columns`, on
    arrays: the encoder's inputs as a booster reads them, one float64 array each.

    A number stays as it is; a text becomes the booster's code of its level (the position of
    the text in the booster's ``pandas_categorical`` list), NaN for a text the encoder did
    not see in fit, a level the booster does not know, or None.
    """

    names: tuple[str, ...]
    codes: tuple[dict[str, float] | None, ...]  # per input; None for a number

    @classmethod
    def of(cls, encoder: FeatureEncoder, levels: Sequence[Sequence[Any]]) -> _Encoding:
        categorical = [c for c in encoder.columns if c in encoder.categories]
        if len(categorical) != len(levels):  # feature_columns refuses it: LightGBM predicts
            raise _Unsupported
        booster = dict(zip(categorical, levels, strict=True))
        codes: list[dict[str, float] | None] = []
        for name in encoder.columns:
            if name not in encoder.categories:
                codes.append(None)
                continue
            position = {level: float(k) for k, level in enumerate(booster[name])}
            fitted = [str(level) for level in encoder.categories[name]]
            codes.append(_shared({text: position[text] for text in fitted if text in position}))
        return cls(tuple(encoder.columns), tuple(codes))

    def columns(self, inputs: Mapping[str, Column], memo: _Memo) -> list[FloatArray] | None:
        """The inputs as the booster reads them; None when one is not of the kind it was in
        fit (``FeatureEncoder.transform`` then says so)."""
        out = []
        for name, codes in zip(self.names, self.codes, strict=True):
            column = inputs[name]
            if codes is None:
                if column.dtype != np.float64:
                    return None
                out.append(column.astype(np.float64, copy=False))
                continue
            if column.dtype != object:
                return None
            key = (name, id(codes))
            if key not in memo:
                memo[key] = np.array([codes.get(v, math.nan) for v in column], dtype=np.float64)
            out.append(memo[key])
        return out


@dataclass(frozen=True, eq=False)
class _Trees:
    """Boosters on one encoding: (rows, boosters) predictions from their tables, or an
    S-learner's (rows, arms), the mean of its bags."""

    encoding: _Encoding
    forest: Forest
    arm_feature: int = -1
    arms: int = 1

    @classmethod
    def of(cls, boosters: Sequence[Any], encoder: FeatureEncoder) -> _Trees:
        """As :func:`~uplift.models.trees.predict_boosters` evaluates them."""
        forest = boosters_forest(boosters, len(encoder.columns))
        if forest is None:
            raise _Unsupported
        return cls(_Encoding.of(encoder, boosters[0].pandas_categorical or []), forest)

    @classmethod
    def of_arms(cls, boosters: Sequence[Any], encoder: FeatureEncoder, arms: int) -> _Trees:
        """As :func:`~uplift.models.trees.predict_arms` evaluates them (the arm last)."""
        n_inputs = len(encoder.columns)
        forest = arms_forest(boosters, n_inputs, arms)
        if forest is None:
            raise _Unsupported
        levels = list(boosters[0].pandas_categorical or [])[:-1]
        return cls(_Encoding.of(encoder, levels), forest, n_inputs, arms)

    @property
    def bagged(self) -> bool:
        return self.arm_feature >= 0

    def evaluate(self, inputs: Mapping[str, Column], memo: _Memo) -> FloatArray | None:
        columns = self.encoding.columns(inputs, memo)
        if columns is None:
            return None
        return self.forest.evaluate(
            columns, _THREADS, self.arm_feature, self.arms, mean=self.bagged
        )


@dataclass(frozen=True, eq=False)
class _Learner:
    """An uplift learner's predictions: E[y | arm, x] per arm, control first, for an outcome
    learner (``outcomes``), else the uplift of each treatment arm."""

    trees: _Trees
    outcomes: bool

    @classmethod
    def of(cls, model: BaseUpliftModel, control: str, arms: tuple[str, ...]) -> _Learner:
        # Exact types: a subclass may predict otherwise than the class mirrored here.
        if tuple(getattr(model, "treatment_arms_", ())) != arms or model.control_ != control:
            raise _Unsupported  # the frame path selects the arms by name
        if type(model) is SLearner:
            trees = _Trees.of_arms(model.models_, model.encoder_, 1 + len(arms))
            return cls(trees, outcomes=True)
        if type(model) is TLearner:
            return cls(_Trees.of(model.models_, model.encoder_), outcomes=True)
        if type(model) is DRLearner:
            return cls(_Trees.of(model.models_, model.encoder_), outcomes=False)
        raise _Unsupported

    def predict(self, inputs: Mapping[str, Column], memo: _Memo) -> FloatArray | None:
        return self.trees.evaluate(inputs, memo)

    def uplift(self, inputs: Mapping[str, Column], memo: _Memo) -> FloatArray | None:
        """Uplift per treatment arm, as ``BaseUpliftModel.predict``."""
        out = self.predict(inputs, memo)
        if out is None or not self.outcomes:
            return out
        return out[:, 1:] - out[:, [0]]


@dataclass(frozen=True, eq=False)
class _Risk:
    """``RiskModel.predict``'s risk and cause."""

    model: RiskModel
    encoding: _Encoding

    @classmethod
    def of(cls, model: RiskModel) -> _Risk:
        encoding = _Encoding.of(model.encoder, model.booster.pandas_categorical or [])
        empty = [np.empty(0) for _ in encoding.names]
        if model.column_contributions(empty, 0) is None:  # no tables: LightGBM's SHAP values
            raise _Unsupported
        return cls(model, encoding)

    def predict(
        self, inputs: Mapping[str, Column], rows: int, memo: _Memo
    ) -> tuple[FloatArray, NDArray[np.object_]] | None:
        columns = self.encoding.columns(inputs, memo)
        if columns is None:
            return None
        logits = self.model.column_contributions(columns, rows, _THREADS)
        if logits is None:
            return None
        codes, _ = dominant_codes(logits)
        return self.model.risk_of(logits), _CAUSES[codes]


class ArrayScorer:
    """Net value per order and treatment arm, and risk and cause, of orders given as arrays
    (see the module's text). Build it with :meth:`of`."""

    def __init__(
        self,
        model: UpliftModel,
        costs: Mapping[str, float],
        vouchers: Mapping[str, float],
    ) -> None:
        arms, control = model.treatment_arms, model.control
        if model.retained_model is None:
            raise _Unsupported  # a revenue-only model
        self._inputs = frozenset(model.inputs)
        self._retained = _Learner.of(model.retained_model, control, arms)
        self._base: _Trees | None = None
        if not self._retained.outcomes:
            if model.retained_base_model is None:
                raise _Unsupported
            base = model.retained_base_model
            self._base = _Trees.of([base.booster], base.encoder)
        self._revenue: _Learner | None = None
        if not model.revenue_from_order_value:
            if model.revenue_model is None:
                raise _Unsupported
            self._revenue = _Learner.of(model.revenue_model, control, arms)
        self._risk = None if model.risk_model is None else _Risk.of(model.risk_model)
        encoders = [self._retained.trees.encoding, *self._parts_encodings()]
        if any(not set(e.names) <= self._inputs for e in encoders):
            raise _Unsupported  # an encoder reads what the orders do not carry
        # Effects.net_value: a cost on every use, a voucher on every kept order.
        self._cost = np.array([float(costs.get(a, 0.0)) for a in arms])
        self._paid = [j for j, a in enumerate(arms) if vouchers.get(a, 0.0) > 0]
        self._voucher = np.array([float(vouchers[arms[j]]) for j in self._paid])

    def _parts_encodings(self) -> list[_Encoding]:
        parts = [
            None if self._base is None else self._base.encoding,
            None if self._revenue is None else self._revenue.trees.encoding,
            None if self._risk is None else self._risk.encoding,
        ]
        return [p for p in parts if p is not None]

    @classmethod
    def of(
        cls,
        model: UpliftModel,
        costs: Mapping[str, float],
        vouchers: Mapping[str, float],
    ) -> ArrayScorer | None:
        """The scorer of ``model``, or None when a part of it is not mirrored here. One order
        of missing values is scored at once, so that the compiled tree evaluator is loaded
        before the first order comes."""
        try:
            scorer = cls(model, costs, vouchers)
        except _Unsupported:
            return None
        missing: dict[str, Column] = {name: np.full(1, None, dtype=object) for name in model.inputs}
        for encoding in [scorer._retained.trees.encoding, *scorer._parts_encodings()]:
            for name, codes in zip(encoding.names, encoding.codes, strict=True):
                if codes is None:
                    missing[name] = np.full(1, math.nan)
        missing["order_value"] = np.zeros(1)
        scorer.predict(missing, 1)
        return scorer

    def predict(self, inputs: Mapping[str, Column], rows: int) -> Predicted | None:
        """Net value, risk and cause of the orders of ``inputs`` (model inputs by name, numbers
        as float64, texts as objects); None when the frame path must score them."""
        if not rows:
            return None
        memo: _Memo = {}
        retained = self._retained.predict(inputs, memo)
        if retained is None:
            return None
        # UpliftModel._retained: uplift kept within what a probability allows.
        if self._retained.outcomes:
            base = retained[:, 0]
            uplift = retained[:, 1:] - base[:, None]
        else:
            assert self._base is not None  # built with the learner
            control = self._base.evaluate(inputs, memo)
            if control is None:
                return None
            base, uplift = control[:, 0], retained
        retained = np.clip(uplift, -base[:, None], 1.0 - base[:, None])
        if self._revenue is None:  # revenue uplift is order_value x retained uplift
            revenue = retained * inputs["order_value"][:, None]
        else:
            found = self._revenue.uplift(inputs, memo)
            if found is None:
                return None
            revenue = found
        value = self._net_value(revenue, retained, base)
        if value is None:
            return None
        if self._risk is None:
            return value, None, None
        scored = self._risk.predict(inputs, rows, memo)
        if scored is None:
            return None
        return value, scored[0], scored[1]

    def _net_value(
        self, revenue: FloatArray, retained: FloatArray, base: FloatArray
    ) -> FloatArray | None:
        """``Effects.net_value(costs, vouchers).value``, in its order of operations; None for
        a prediction that is not finite (Effects names the orders)."""
        if not np.isfinite(revenue).all():
            return None
        cost = np.broadcast_to(self._cost, revenue.shape).copy()
        if self._paid:
            kept_uplift = retained[:, self._paid]
            if not (np.isfinite(base).all() and np.isfinite(kept_uplift).all()):
                return None
            kept = np.clip(base[:, None] + kept_uplift, 0.0, 1.0)
            cost[:, self._paid] += kept * self._voucher
        return np.asarray(revenue - cost, dtype=np.float64)
