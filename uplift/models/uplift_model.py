"""The trained uplift model of a log: retained and revenue uplift per order and arm.

``train_uplift(log)`` fits one learner for the binary outcome (``retained``) and, when the
revenue at risk is not known at decision time, one for revenue; ``predict_effects`` returns
their :class:`~uplift.models.effects.Effects`: retained and revenue uplift per order and arm,
and P(retained | control, x), which the policy needs for costs paid only when an order is kept.
``predict_risk`` gives every order's calibrated cancellation risk without action and the family
of causes it comes from (:mod:`uplift.models.risk`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import DataWarning, SchemaError, check_option, describe_rows
from uplift.models.base import BaseUpliftModel, FeatureEncoder, FloatArray
from uplift.models.catalog import make_learner
from uplift.models.effects import BASE_COLUMN, Effects, effect_column
from uplift.models.learners import (
    LEARNING_RATE,
    MIN_CHILD_SAMPLES,
    N_ESTIMATORS,
    N_JOBS,
    NUM_LEAVES,
    OutcomeLearner,
    inverse_propensity_weights,
    leaf_size,
    lgbm_params,
    predict_booster,
    train_lgbm,
)
from uplift.models.risk import RiskModel
from uplift.models.trees import is_booster, prepare

if TYPE_CHECKING:
    from uplift.models.trees import Booster

__all__ = [
    "ControlOutcomeModel",
    "FittedModels",
    "Selection",
    "UpliftModel",
    "fit_models",
    "model_inputs",
    "predict_table",
]

Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class ControlOutcomeModel:
    """E[outcome | control, x]: LightGBM on the control rows, weighted by 1 / propensity.

    Learners that model only the uplift (X, DR, R, forests) need it for outcome levels:
    ``retained_base`` and the outcome model of the doubly robust policy value.
    """

    encoder: FeatureEncoder
    booster: Booster

    @classmethod
    def fit(cls, log: ExperimentLog, outcome: str, seed: int) -> ControlOutcomeModel:
        """Fit on the control rows of ``log``."""
        frame = log.frame
        codes = (frame["arm"] != log.control).to_numpy().astype(np.int64)
        weight = inverse_propensity_weights(codes, frame["propensity"].to_numpy(np.float64))
        control = codes == 0
        X = frame.loc[control, list(model_inputs(log))]
        y = frame.loc[control, outcome].to_numpy(np.float64)
        encoder = FeatureEncoder().fit(X)
        params = lgbm_params(
            binary=outcome == "retained",
            learning_rate=LEARNING_RATE,
            num_leaves=NUM_LEAVES,
            min_child_samples=leaf_size(MIN_CHILD_SAMPLES, len(y)),
            n_jobs=N_JOBS,
            seed=seed,
        )
        booster = train_lgbm(params, encoder.transform(X), y, N_ESTIMATORS, weight[control])
        return cls(encoder, booster)

    def predict(self, X: pd.DataFrame) -> FloatArray:
        """Expected outcome without action, per order."""
        return predict_booster(self.booster, self.encoder.transform(X))


@dataclass(frozen=True, eq=False)
class Selection:
    """How ``auto`` chose its learner.

    ``scores`` has one row per candidate, the default first: ``learner``, ``policy_value``
    (doubly robust mean net value per held-out order), ``se``, ``ci_lower``, ``ci_upper``,
    ``diff_to_default``, ``diff_se``, ``diff_ci_lower``, ``diff_ci_upper`` (paired, against the
    default candidate), ``qini`` (mean Qini coefficient over arms), ``treated_share``,
    ``fit_seconds``, ``clearly_better`` (the paired difference's 95% interval, Bonferroni-
    adjusted for the number of alternatives, is above zero) and ``chosen``. ``method`` is
    ``time_folds`` or ``cross_fit``.
    """

    chosen: str
    method: str
    outcome: str
    n_orders: int
    scores: pd.DataFrame


@dataclass(frozen=True, eq=False)
class UpliftModel:
    """Fitted uplift of every treatment arm on retention and revenue.

    Attributes
    ----------
    learner : str
        The learner used (the one ``auto`` chose, or the one named).
    control, treatment_arms : str, tuple of str
        Arm labels; ``treatment_arms`` orders the output columns.
    inputs : tuple of str
        Columns ``predict_effects`` needs: the log's features, then ``order_value`` if known.
    retained_model, revenue_model : BaseUpliftModel or None
        Uplift on ``retained`` (None for a revenue-only log) and on revenue (None when revenue
        uplift is ``order_value x retained uplift``, or when the log has no revenue).
    retained_base_model, revenue_base_model : ControlOutcomeModel or None
        E[outcome | control, x] when the uplift model does not give it itself.
    selection : Selection or None
        The validation scores of every candidate when ``auto`` chose the learner.
    training : dict
        Facts about the training log for the model card (source, rows, data hash, costs ...).
    risk_model : RiskModel or None
        P(cancelled | no action, x) and its causes; None for a revenue-only log, a control arm
        with too few cancellations (``training["risk_absent"]`` says which), or a model saved
        before risk models existed.
    """

    learner: str
    control: str
    treatment_arms: tuple[str, ...]
    inputs: tuple[str, ...]
    retained_model: BaseUpliftModel | None
    revenue_model: BaseUpliftModel | None
    retained_base_model: ControlOutcomeModel | None
    revenue_base_model: ControlOutcomeModel | None
    selection: Selection | None = None
    training: dict[str, Any] = field(default_factory=dict)
    risk_model: RiskModel | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """Model inputs other than ``order_value``."""
        return tuple(c for c in self.inputs if c != "order_value")

    @property
    def revenue_from_order_value(self) -> bool:
        """Whether revenue uplift is ``order_value x retained uplift``."""
        return self.retained_model is not None and "order_value" in self.inputs

    @property
    def effect_columns(self) -> tuple[str, ...]:
        """The columns of ``predict_effects(...).to_frame()``, in order."""
        columns: list[str] = []
        if self.retained_model is not None:
            columns += [effect_column("retained", a) for a in self.treatment_arms]
        if self.revenue_from_order_value or self.revenue_model is not None:
            columns += [effect_column("revenue", a) for a in self.treatment_arms]
        if self.retained_model is not None:
            columns.append(BASE_COLUMN)
        return tuple(columns)

    def predict_effects(self, frame: pd.DataFrame) -> Effects:
        """The effects of every treatment arm on every order of ``frame`` (rows keep its index).

        ``frame`` is an orders table or a log's ``frame``: it needs the columns in ``inputs``.
        """
        X = check_inputs(frame, self.inputs)
        retained = revenue = base = None
        if self.retained_model is not None:
            retained, base_values = self._retained(X)
            base = pd.Series(base_values, index=X.index)
        if retained is not None and self.revenue_from_order_value:
            revenue = retained.mul(X["order_value"].to_numpy(np.float64), axis=0)
        elif self.revenue_model is not None:
            revenue = self.revenue_model.predict(X)[list(self.treatment_arms)]
        return Effects(self.control, self.treatment_arms, retained, revenue, base)

    def prepare(self) -> None:
        """Do now what the first prediction does whatever the orders: build the trees' tables,
        load the compiled evaluator, ready the risk model's tables (a command does it in a
        thread while it reads the orders)."""
        for part in (
            self.retained_model,
            self.revenue_model,
            self.retained_base_model,
            self.revenue_base_model,
        ):
            # The boosters one pass predicts with: a learner's (a blend's trees'), a base model's.
            learner = getattr(part, "trees_", part)
            found = getattr(learner, "models_", None) or [getattr(learner, "booster", None)]
            prepare([b for b in found if is_booster(b)])
        if self.risk_model is not None:
            self.risk_model.prepare()

    def predict_risk(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every order's cancellation risk without action and where it comes from.

        One row per row of ``frame`` (its index): ``risk``, the calibrated P(cancelled |
        control, x); ``cause``, the family of causes (payment, stock, fulfilment,
        serviceability, confidence, other) that pushes the order's log-odds up most against an
        average order, or ``none``; ``cause_share``, that family's part over the sum of the
        parts above 0 (NaN for none); and ``logit_<family>``, each family's part of the
        log-odds (exact tree SHAP values summed by family; with
        ``risk_model.expected_value`` they add up to the model's log-odds).
        """
        if self.risk_model is None:
            if self.retained_model is None:
                raise SchemaError(
                    "this model has no risk model: its log had no 0/1 outcome (retained or "
                    "cancelled), only revenue, so there is no cancellation risk to predict"
                )
            reason = self.training.get("risk_absent")
            raise SchemaError(
                f"this model has no risk model ({reason}); give the log more control orders"
                if reason
                else "this model was trained without a risk model; retrain it "
                "(uplift train) to predict risk and causes"
            )
        return self.risk_model.predict(check_inputs(frame, self.inputs))

    def predict_outcomes(self, frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
        """E[``outcome`` | arm, x] per order and arm (control first): base plus uplift.

        ``outcome`` is ``retained`` or ``revenue``; this is the outcome model the doubly robust
        policy value needs.
        """
        check_option("outcome", outcome, ("retained", "revenue"))
        X = check_inputs(frame, self.inputs)
        effects = self.predict_effects(X)
        if outcome == "retained" or self.revenue_from_order_value:
            value = X["order_value"] if outcome == "revenue" else None
            kept = effects.outcomes("retained" if outcome == "retained" else "revenue", value)
            return kept.set_axis(frame.index)
        if self.revenue_model is None:
            raise SchemaError("this model has no revenue outcome; the log had no revenue")
        if isinstance(self.revenue_model, OutcomeLearner):
            base = self.revenue_model.predict_outcomes(X)[self.control].to_numpy()
        else:
            base = self._revenue_base(X)
        revenue = effects.uplift("revenue").to_numpy()
        levels = np.column_stack([base, base[:, None] + revenue])
        return pd.DataFrame(levels, index=frame.index, columns=list(effects.arms))

    def _revenue_base(self, X: pd.DataFrame) -> FloatArray:
        if self.revenue_base_model is None:
            raise SchemaError("this model has no revenue outcome; the log had no revenue")
        return self.revenue_base_model.predict(X)

    def _retained(self, X: pd.DataFrame) -> tuple[pd.DataFrame, FloatArray]:
        """Retained uplift, kept within what a probability allows, and the control rate."""
        model = self.retained_model
        if isinstance(model, OutcomeLearner):
            outcomes = model.predict_outcomes(X)
            base = outcomes[self.control].to_numpy()
            uplift = outcomes[list(self.treatment_arms)].sub(base, axis=0)
        else:
            if model is None or self.retained_base_model is None:
                raise SchemaError("this model has no retained outcome; it predicts revenue only")
            base = self.retained_base_model.predict(X)
            uplift = model.predict(X)[list(self.treatment_arms)]
        # P(retained | arm) = base + uplift must stay a probability.
        clipped = np.clip(uplift.to_numpy(), -base[:, None], 1.0 - base[:, None])
        return pd.DataFrame(clipped, index=X.index, columns=uplift.columns), base


def model_inputs(log: ExperimentLog) -> tuple[str, ...]:
    """The columns a model of ``log`` learns from: its features and ``order_value`` if known."""
    return (*log.features, *(("order_value",) if log.has_order_value else ()))


def check_inputs(frame: pd.DataFrame, inputs: tuple[str, ...]) -> pd.DataFrame:
    """The model inputs of ``frame``, or a SchemaError naming what is missing or broken."""
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(f"orders must be a pandas DataFrame; got {type(frame).__name__}")
    missing = [c for c in inputs if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"orders lack column(s) {', '.join(missing)} that the model was trained on; "
            f"it needs {', '.join(inputs)}"
        )
    X = frame[list(inputs)]
    if "order_value" in inputs:
        value = pd.to_numeric(X["order_value"], errors="coerce")
        bad = ~(np.isfinite(value.to_numpy(np.float64)) & (value.to_numpy(np.float64) >= 0))
        if bad.any():
            raise SchemaError(
                "column order_value must be a finite number >= 0; "
                f"not so in {describe_rows(np.flatnonzero(bad) + 1)}"
            )
    return X


@dataclass(frozen=True, eq=False)
class FittedModels:
    """The models fitted on one log, before they become an :class:`UpliftModel`."""

    log: ExperimentLog
    learner: str
    retained: BaseUpliftModel | None
    revenue: BaseUpliftModel | None
    retained_base: ControlOutcomeModel | None
    revenue_base: ControlOutcomeModel | None

    def model(
        self,
        *,
        selection: Selection | None = None,
        training: dict[str, Any] | None = None,
        risk_model: RiskModel | None = None,
    ) -> UpliftModel:
        """The fitted models as one :class:`UpliftModel`."""
        return UpliftModel(
            learner=self.learner,
            control=self.log.control,
            treatment_arms=self.log.treatment_arms,
            inputs=model_inputs(self.log),
            retained_model=self.retained,
            revenue_model=self.revenue,
            retained_base_model=self.retained_base,
            revenue_base_model=self.revenue_base,
            selection=selection,
            training=training or {},
            risk_model=risk_model,
        )


def predict_table(model: UpliftModel, frame: pd.DataFrame, *, source: str) -> Effects:
    """The effects of every order of ``frame`` (an orders file's rows), keyed by order_id;
    without an order_id column, by row number (1, 2, ...), as a log is read."""
    if "order_id" not in frame.columns:
        warnings.warn(
            f"{source}: no order_id column; row numbers are used as order ids "
            "(map yours with --map order_id=COLUMN)",
            DataWarning,
            stacklevel=2,
        )
        frame = frame.assign(order_id=np.arange(1, len(frame) + 1))
    try:
        effects = model.predict_effects(frame)
    except SchemaError as error:
        raise SchemaError(f"{source}: {error}") from None
    return effects.with_order_ids(frame["order_id"])


def fit_models(
    log: ExperimentLog, learner: str, seed: int, directions: Mapping[str, int] | None = None
) -> FittedModels:
    """Fit the retained model, the revenue model and the control-rate model a log calls for;
    ``directions`` (column -> 1 or -1) hold for the learner's tree models when it takes them."""
    X = log.frame[list(model_inputs(log))]
    arm, propensity = log.frame["arm"], log.frame["propensity"]

    def fit(outcome: str) -> BaseUpliftModel:
        model = make_learner(learner, seed, directions)
        return model.fit(X, log.frame[outcome], arm=arm, propensity=propensity, control=log.control)

    retained = fit("retained") if log.has_retained else None
    needs_revenue_model = log.has_revenue and not (log.has_retained and log.has_order_value)
    revenue = fit("revenue") if needs_revenue_model else None
    retained_base = revenue_base = None
    if retained is not None and not isinstance(retained, OutcomeLearner):
        retained_base = ControlOutcomeModel.fit(log, "retained", seed)
    if revenue is not None and not isinstance(revenue, OutcomeLearner):
        revenue_base = ControlOutcomeModel.fit(log, "revenue", seed)
    return FittedModels(log, learner, retained, revenue, retained_base, revenue_base)
