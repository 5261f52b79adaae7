"""Calibration of a probability model on held-out orders: Platt or isotonic, chosen by log
loss, and the expected calibration error and reliability curve of the model card."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.models.base import FloatArray

__all__ = [
    "CV_FOLDS",
    "ECE_BINS",
    "CalibrationReport",
    "Calibrator",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "calibrator_from_dict",
    "choose_calibrator",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_platt",
    "log_loss",
    "reliability",
]

#: Folds of the cross-validation that chooses the calibration method.
CV_FOLDS = 2
#: Equal-count bins of predicted risk for the calibration error and the reliability curve.
ECE_BINS = 10
#: Probabilities are kept this far from 0 and 1 in the log loss (an isotonic 0 would be inf).
_EPS = 1e-15
Method = Literal["platt", "isotonic"]


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def log_loss(y: FloatArray, p: FloatArray, weight: FloatArray | None = None) -> float:
    """Mean (weighted) binary log loss of probabilities ``p`` for 0/1 outcomes ``y``."""
    q = np.clip(p, _EPS, 1.0 - _EPS)
    losses = -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    return float(np.average(losses, weights=weight))


@dataclass(frozen=True, eq=False)
class PlattCalibrator:
    """P(cancelled) = sigmoid(slope x score + intercept), on the booster's raw score."""

    slope: float
    intercept: float
    method: Literal["platt"] = "platt"

    def predict(self, score: FloatArray) -> FloatArray:
        """Calibrated probabilities of raw scores ``score``."""
        return _sigmoid(self.slope * score + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """The calibrator as JSON-ready numbers."""
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True, eq=False)
class IsotonicCalibrator:
    """A non-decreasing step-and-ramp map of the raw score: linear between the knots
    ``scores`` -> ``probabilities``, constant beyond them (as scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts)."""

    scores: FloatArray
    probabilities: FloatArray
    method: Literal["isotonic"] = "isotonic"

    def predict(self, score: FloatArray) -> FloatArray:
        """Calibrated probabilities of raw scores ``score``."""
        return np.asarray(np.interp(score, self.scores, self.probabilities), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The calibrator as JSON-ready numbers."""
        return {
            "method": self.method,
            "scores": [float(v) for v in self.scores],
            "probabilities": [float(v) for v in self.probabilities],
        }


Calibrator = PlattCalibrator | IsotonicCalibrator


def fit_platt(score: FloatArray, y: FloatArray, weight: FloatArray) -> PlattCalibrator:
    """Platt scaling: the weighted logistic regression of ``y`` on ``score`` (Newton steps,
    halved until the loss falls; a ridge of 1e-9 keeps separable data finite)."""
    X = np.column_stack([score, np.ones_like(score)])
    w = weight / weight.sum()
    coef = np.array([1.0, 0.0])  # the booster's own scale: a fit of its log loss

    def loss(c: FloatArray) -> float:
        return log_loss(y, _sigmoid(X @ c), w) + 0.5e-9 * float(c @ c)

    current = loss(coef)
    for _ in range(100):
        p = _sigmoid(X @ coef)
        gradient = X.T @ (w * (p - y)) + 1e-9 * coef
        hessian = (X * (w * p * (1.0 - p))[:, None]).T @ X + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(30):
            trial = coef - step
            value = loss(trial)
            if value <= current:
                break
            step = step / 2
        else:
            break
        coef, improvement, current = trial, current - value, value
        if improvement < 1e-14 or float(np.abs(step).max()) < 1e-12:
            break
    return PlattCalibrator(float(coef[0]), float(coef[1]))


def fit_isotonic(score: FloatArray, y: FloatArray, weight: FloatArray) -> IsotonicCalibrator:
    """Isotonic regression of ``y`` on ``score`` (weighted), as knots to interpolate."""
    from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415 - fitting needs scikit-learn; predicting does not

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    fitted.fit(score, y, sample_weight=weight)
    return IsotonicCalibrator(
        np.asarray(fitted.X_thresholds_, dtype=np.float64),
        np.asarray(fitted.y_thresholds_, dtype=np.float64),
    )


_FITS: dict[str, Callable[[FloatArray, FloatArray, FloatArray], Calibrator]] = {
    "platt": fit_platt,
    "isotonic": fit_isotonic,
}


def reliability(
    predicted: FloatArray, y: FloatArray, weight: FloatArray | None = None, bins: int = ECE_BINS
) -> pd.DataFrame:
    """The reliability curve: ``bins`` equal-count bins of ``predicted`` (ties kept in the order
    given), each with ``mean_predicted`` and ``observed`` (weighted means) and ``orders``."""
    w = np.ones(len(y)) if weight is None else weight
    parts = np.array_split(np.argsort(predicted, kind="stable"), min(bins, len(predicted)))
    return pd.DataFrame(
        {
            "mean_predicted": [float(np.average(predicted[i], weights=w[i])) for i in parts],
            "observed": [float(np.average(y[i], weights=w[i])) for i in parts],
            "orders": [len(i) for i in parts],
            "weight": [float(w[i].sum()) for i in parts],
        }
    )


def expected_calibration_error(curve: pd.DataFrame) -> float:
    """Mean |mean predicted - observed| over the bins of a reliability curve, by bin weight."""
    gaps = (curve["mean_predicted"] - curve["observed"]).abs()
    return float(np.average(gaps, weights=curve["weight"]))


@dataclass(frozen=True, eq=False)
class CalibrationReport:
    """How the risk was calibrated, for the model card.

    ``method`` was chosen by the cross-validated log losses ``log_loss_platt`` and
    ``log_loss_isotonic`` (``folds`` folds inside the calibration part); ``ece`` and
    ``curve`` (:func:`reliability`) measure the chosen method out of fold on the calibration
    part. ``orders_fitted`` and ``orders_calibration`` count the control orders of each part.
    """

    method: Method
    log_loss_platt: float
    log_loss_isotonic: float
    folds: int
    ece: float
    curve: pd.DataFrame
    orders_fitted: int
    orders_calibration: int

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "method": self.method,
            "log_loss_platt": self.log_loss_platt,
            "log_loss_isotonic": self.log_loss_isotonic,
            "folds": self.folds,
            "ece": self.ece,
            "ece_bins": len(self.curve),
            "reliability": self.curve.to_dict(orient="list"),
            "orders_fitted": self.orders_fitted,
            "orders_calibration": self.orders_calibration,
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> CalibrationReport:
        """The report :meth:`to_dict` wrote; ValueError when it is not one."""
        method = spec.get("method")
        if method not in _FITS:
            raise ValueError(f"calibration method must be one of {', '.join(_FITS)}")
        curve = spec.get("reliability")
        columns = ("mean_predicted", "observed", "orders", "weight")
        if not isinstance(curve, dict) or set(curve) != set(columns):
            raise ValueError(f"reliability must hold the lists {', '.join(columns)}")
        values = {c: _numbers(curve[c], f"reliability.{c}") for c in columns}
        if len({len(v) for v in values.values()}) != 1:
            raise ValueError("the reliability lists differ in length")
        table = pd.DataFrame(values).astype({"orders": np.int64})
        return cls(
            method=method,
            log_loss_platt=_number(spec.get("log_loss_platt"), "log_loss_platt"),
            log_loss_isotonic=_number(spec.get("log_loss_isotonic"), "log_loss_isotonic"),
            folds=int(_number(spec.get("folds"), "folds")),
            ece=_number(spec.get("ece"), "ece"),
            curve=table[list(columns)],
            orders_fitted=int(_number(spec.get("orders_fitted"), "orders_fitted")),
            orders_calibration=int(_number(spec.get("orders_calibration"), "orders_calibration")),
        )


def choose_calibrator(
    score: FloatArray, y: FloatArray, weight: FloatArray, fold: NDArray[np.int64]
) -> tuple[Calibrator, CalibrationReport]:
    """Platt or isotonic, whichever has the lower cross-validated log loss over ``fold``
    (ties: Platt), refitted on all rows; the report's figures are out of fold."""
    out_of_fold = {name: np.empty(len(y)) for name in _FITS}
    for k in np.unique(fold):
        test = fold == k
        for name, fit in _FITS.items():
            calibrator = fit(score[~test], y[~test], weight[~test])
            out_of_fold[name][test] = calibrator.predict(score[test])
    losses = {name: log_loss(y, p, weight) for name, p in out_of_fold.items()}
    method: Method = "isotonic" if losses["isotonic"] < losses["platt"] else "platt"
    curve = reliability(out_of_fold[method], y, weight)
    report = CalibrationReport(
        method=method,
        log_loss_platt=losses["platt"],
        log_loss_isotonic=losses["isotonic"],
        folds=len(np.unique(fold)),
        ece=expected_calibration_error(curve),
        curve=curve,
        orders_fitted=0,
        orders_calibration=len(y),
    )
    return _FITS[method](score, y, weight), report


def calibrator_from_dict(spec: Mapping[str, Any]) -> Calibrator:
    """The calibrator :meth:`to_dict` wrote; ValueError when it is not one."""
    method = spec.get("method")
    if method == "platt":
        return PlattCalibrator(
            _number(spec.get("slope"), "slope"), _number(spec.get("intercept"), "intercept")
        )
    if method == "isotonic":
        scores = np.asarray(_numbers(spec.get("scores"), "scores"), dtype=np.float64)
        probabilities = np.asarray(
            _numbers(spec.get("probabilities"), "probabilities"), dtype=np.float64
        )
        if not len(scores) or len(scores) != len(probabilities):
            raise ValueError("isotonic scores and probabilities must be equally long, not empty")
        if np.any(np.diff(scores) < 0) or np.any(np.diff(probabilities) < 0):
            raise ValueError("isotonic scores and probabilities must not decrease")
        if probabilities[0] < 0 or probabilities[-1] > 1:
            raise ValueError("isotonic probabilities must lie in [0, 1]")
        return IsotonicCalibrator(scores, probabilities)
    raise ValueError(f"calibrator method must be one of {', '.join(_FITS)}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return float(value)


def _numbers(value: Any, what: str) -> list[float]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of finite numbers")
    return [_number(v, what) for v in value]


# --------------------------------------------------------------------------------------------
# Causes
# --------------------------------------------------------------------------------------------
