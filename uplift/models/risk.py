"""Every pending order's cancellation risk and the family of causes it comes from.

**Risk** is P(cancelled | no action, x): a LightGBM classifier of ``cancelled`` (1 - retained)
on the control arm's orders, weighted by 1 / propensity (normalised, capped as every outcome
model of the package), so that a targeting policy's log still stands for all orders. It is
calibrated on held-out control orders: the control orders are split (seeded, stratified by
outcome) into a fitting part (75%) and a calibration part (25%); Platt scaling (a logistic
regression on the raw score) and isotonic regression are compared by their log loss under
2-fold cross-validation inside the calibration part, and the better one is fitted on the whole
calibration part. The out-of-fold predictions of the chosen method give the expected
calibration error and the reliability curve of the model card (:class:`CalibrationReport`).

**Cause**: exact tree SHAP values of the raw score (log-odds), as LightGBM's
``predict(X, pred_contrib=True)`` computes them (path-dependent TreeSHAP), summed over the
features of each family of causes (:func:`uplift.data.causes.family_of`). They are centred on
the expected value, the mean raw score of the orders the booster was fitted on. An order's
``cause`` is the family with the largest part, ``none`` when no part is above 0.

LightGBM's ``pred_contrib`` takes about 40 s for a million orders on two cores. But a tree's
SHAP values depend on an order only through the side it takes at each of the tree's splits,
and :class:`~uplift.models.trees.Forest` already cuts every input into the classes of values a
tree's splits tell apart, with a table over their combinations (64 cells at most for 7
leaves). So :func:`contribution_forest` computes the SHAP values of one representative order
per cell (:func:`~uplift.models.contributions.tree_shap`, every subset of the tree's inputs
with its Shapley weight: no LightGBM, which a prediction then need not import; tests hold it
to LightGBM's ``pred_contrib`` to 1e-12), sums them by family, and writes them into tables of
the same shape: one Forest "model" per family. Its compiled evaluator then gives the exact
TreeSHAP sums of a million orders in well under a second.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.causes import family_of
from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.models.base import FeatureEncoder, FloatArray
from uplift.models.calibration import (
    CV_FOLDS,
    CalibrationReport,
    Calibrator,
    choose_calibrator,
)
from uplift.models.contributions import (
    CAUSES,
    FamilyForest,
    contribution_forest,
    dominant_cause,
    logit_column,
)
from uplift.models.learners import (
    DIRECTIONS,
    LEARNING_RATE,
    MIN_CHILD_SAMPLES,
    N_ESTIMATORS,
    N_JOBS,
    NUM_LEAVES,
    inverse_propensity_weights,
    leaf_size,
    lgbm_params,
    predict_threads,
    train_lgbm,
)
from uplift.models.trees import feature_columns

if TYPE_CHECKING:
    from uplift.models.trees import Booster

__all__ = ["CALIBRATION_SHARE", "RISK_COLUMNS", "RiskModel", "fit_risk", "no_risk_reason"]

#: The risk columns a predictions file or a queue carries when its model has a risk model.
RISK_COLUMNS = ("risk", "cause", "cause_share")

#: Share of the control orders held out to calibrate the risk.
CALIBRATION_SHARE = 0.25


@dataclass(frozen=True, eq=False)
class RiskModel:
    """P(cancelled | no action, x), calibrated, and the family of causes of every order's risk.

    Attributes
    ----------
    encoder : FeatureEncoder
        The encoding of the inputs (the uplift model's inputs).
    booster : lightgbm.Booster
        The binary classifier of ``cancelled`` on the control arm's fitting part.
    calibrator : PlattCalibrator or IsotonicCalibrator
        Maps the booster's raw score to the calibrated risk.
    families : dict of str to str
        The family of causes of every input (:func:`uplift.data.causes.family_of`).
    report : CalibrationReport
        How the calibration was chosen and how well it did, out of fold.
    """

    encoder: FeatureEncoder
    booster: Booster
    calibrator: Calibrator
    families: dict[str, str]
    report: CalibrationReport

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of :meth:`predict`."""
        return ("risk", "cause", "cause_share", *(logit_column(c) for c in CAUSES))

    @functools.cached_property
    def expected_value(self) -> float:
        """The mean raw score (log-odds) of the fitting part: where the contributions start."""
        if self._cause_tables is not None:
            return self._cause_tables.expected_value
        row = np.full((1, self.booster.num_feature()), np.nan)
        shap = self.booster.predict(row, pred_contrib=True, num_threads=1)
        return float(np.asarray(shap, dtype=np.float64)[0, -1])

    @functools.cached_property
    def _family_index(self) -> NDArray[np.int64]:
        return np.array([CAUSES.index(self.families[c]) for c in self.encoder.columns], np.int64)

    # Named apart from the ``_tables`` and ``_family_tables`` of older versions (laid out
    # otherwise, or without the expected value): a pickled model that kept those computes its
    # own anew.
    @functools.cached_property
    def _cause_tables(self) -> FamilyForest | None:
        return contribution_forest(self.booster, self._family_index)

    def prepare(self) -> None:
        """Build the contribution tables and the expected value now, ahead of the first
        :meth:`predict` (which would build them): a command does it while it reads orders."""
        _ = self.expected_value, self._cause_tables

    def contributions(self, encoded: pd.DataFrame) -> FloatArray:
        """Each family's part of the raw score (rows x :data:`CAUSES`) of encoded inputs; with
        :attr:`expected_value` they add up to the booster's raw score."""
        if self._cause_tables is not None:
            try:
                columns = feature_columns(encoded, self.booster.pandas_categorical)
            except ValueError:
                pass  # LightGBM below says what is wrong
            else:
                logits = self.column_contributions(columns, len(encoded))
                assert logits is not None  # there are tables
                return logits
        out = np.zeros((len(encoded), len(CAUSES)))
        if not len(encoded):
            return out
        shap = self.booster.predict(encoded, pred_contrib=True, num_threads=predict_threads())
        np.add.at(out.T, self._family_index, np.asarray(shap)[:, :-1].T)
        return out

    def column_contributions(
        self, columns: Sequence[FloatArray], rows: int, threads: int | None = None
    ) -> FloatArray | None:
        """:meth:`contributions` of inputs already read as the booster reads a frame (one
        float64 array per input, :func:`~uplift.models.trees.feature_columns`), on
        ``threads`` (None: :func:`~uplift.models.learners.predict_threads`); None when the
        booster's trees have no tables (then only :meth:`contributions` can tell)."""
        tables = self._cause_tables
        if tables is None:
            return None
        if not rows:
            return np.zeros((0, len(CAUSES)))
        return tables.evaluate(columns, predict_threads() if threads is None else threads)

    def risk_of(self, logits: FloatArray) -> FloatArray:
        """The calibrated risk of orders whose family parts of the raw score are ``logits``."""
        return self.calibrator.predict(self.expected_value + logits.sum(axis=1))

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Risk, cause, cause_share and ``logit_<family>`` of every order of ``X`` (its index)."""
        encoded = self.encoder.transform(X)
        logits = self.contributions(encoded)
        cause, share = dominant_cause(logits)
        frame = pd.DataFrame(
            {"risk": self.risk_of(logits), "cause": cause, "cause_share": share},
            index=X.index,
        )
        for k, family in enumerate(CAUSES):
            frame[logit_column(family)] = logits[:, k]
        return frame

    def card(self) -> dict[str, Any]:
        """What the model card says about the risk model."""
        return {
            "fitted": True,
            "target": "cancelled",
            "model": "LightGBM binary classifier on the control arm's orders, weighted by "
            "1 / propensity, calibrated on held-out control orders",
            "calibration": self.report.to_dict(),
            "causes": "exact tree SHAP values of the log-odds summed by family, centred on "
            "the mean log-odds of the fitting orders (expected_value)",
            "expected_value": self.expected_value,
            "families": dict(self.families),
        }


def no_risk_reason(log: ExperimentLog) -> str | None:
    """Why ``log`` gets no risk model, or None when it gets one."""
    if not log.has_retained:
        return (
            "no risk model: the log has no 0/1 outcome (retained or cancelled), only revenue, "
            "so there is no cancellation to predict"
        )
    control = log.frame.loc[log.frame["arm"] == log.control, "retained"].to_numpy(np.float64)
    cancelled = int((control == 0).sum())
    least = 2 * CV_FOLDS * 2  # both outcomes in each part and each calibration fold
    if min(cancelled, len(control) - cancelled) < least:
        return (
            f"no risk model: the control arm has {cancelled} cancelled and "
            f"{len(control) - cancelled} retained orders; it needs at least {least} of each "
            "to fit and calibrate one"
        )
    return None


def _split(y: FloatArray, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Fold per row, stratified by outcome and seeded: -1 for the fitting part, else the
    calibration fold (0, 1, ...)."""
    rng = np.random.default_rng([seed, 7])  # its own stream: the split, not the boosters
    fold = np.full(len(y), -1, dtype=np.int64)
    for outcome in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(y == outcome))
        held = rows[: max(CV_FOLDS, round(CALIBRATION_SHARE * len(rows)))]
        fold[held] = (np.arange(len(held)) + (CV_FOLDS - 1) * int(outcome)) % CV_FOLDS
    return fold, np.flatnonzero(fold >= 0)


def fit_risk(
    log: ExperimentLog,
    inputs: Sequence[str],
    seed: int = 0,
    causes: Mapping[str, Sequence[str]] | None = None,
    directions: Mapping[str, int] | None = None,
) -> RiskModel:
    """Fit and calibrate the risk model of ``log`` on ``inputs`` (see the module's text).

    ``causes`` maps families to columns (the project's ``[causes]``); None: the default map.
    ``directions`` (column -> 1 or -1 on the chance of being kept) make the risk monotone the
    other way (:mod:`uplift.models.directions`).
    SchemaError when :func:`no_risk_reason` gives a reason.
    """
    families = family_of(inputs, causes)
    reason = no_risk_reason(log)
    if reason is not None:
        raise SchemaError(f"{log.source}: {reason}")
    frame = log.frame
    codes = (frame["arm"] != log.control).to_numpy().astype(np.int64)
    weight = inverse_propensity_weights(codes, frame["propensity"].to_numpy(np.float64))
    control = codes == 0
    X = frame.loc[control, list(inputs)]
    y = 1.0 - frame.loc[control, "retained"].to_numpy(np.float64)
    w = weight[control]
    fold, held = _split(y, seed)
    fitting = fold < 0
    encoder = FeatureEncoder().fit(X)
    encoded = encoder.transform(X)
    params = lgbm_params(
        binary=True,
        learning_rate=LEARNING_RATE,
        num_leaves=NUM_LEAVES,
        min_child_samples=leaf_size(MIN_CHILD_SAMPLES, int(fitting.sum())),
        n_jobs=N_JOBS,
        seed=seed,
    )
    if directions:  # the risk is of cancelling: each direction turned round
        params[DIRECTIONS] = {column: -sign for column, sign in directions.items()}
    booster = train_lgbm(params, encoded[fitting], y[fitting], N_ESTIMATORS, w[fitting])
    # One thread, as every LightGBM call that may run beside an uplift fit (see training.py).
    held_score = booster.predict(encoded.iloc[held], raw_score=True, num_threads=N_JOBS)
    score = np.asarray(held_score, dtype=np.float64)
    calibrator, report = choose_calibrator(score, y[held], w[held], fold[held])
    report = dataclasses.replace(report, orders_fitted=int(fitting.sum()))
    return RiskModel(encoder, booster, calibrator, families, report)
