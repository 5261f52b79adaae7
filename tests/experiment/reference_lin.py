"""The in-memory regression adjustment the readout used before it worked from sums.

Kept as the reference the aggregate path (:mod:`uplift.experiment.adjustment`) is tested
against: the covariates encoded with pandas and Lin's interacted regression fitted row by row
with statsmodels' WLS and its HC1 errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.experiment.inference import too_large

_MIRROR = {"cancel_rate": "retained_rate", "retained_rate": "cancel_rate"}
MAX_COVARIATE_LEVELS = 50


def lin_estimate(
    outcome: np.ndarray, treated: np.ndarray, covariates: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """Effect of ``treated`` on ``outcome`` adjusted for ``covariates``, with its robust SE.

    Lin (2013, "Agnostic notes on regression adjustments to experimental data"): regress the
    outcome on the treatment, the covariates centred at their (weighted) mean, and their
    interactions; the treatment coefficient is the average effect and its HC1 standard error
    is valid whether or not the regression is right. It never has a larger asymptotic variance
    than the difference in means; CUPED is the one-covariate special case.
    """
    import statsmodels.api as sm  # noqa: PLC0415 - statsmodels takes ~1.5 s; only Lin's fit needs it
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning  # noqa: PLC0415 - statsmodels, as above

    centred = covariates - np.average(covariates, axis=0, weights=weights)
    matrix = np.column_stack([np.ones(len(outcome)), treated, centred, centred * treated[:, None]])
    with warnings.catch_warnings():
        # Indicators of related features (cash on delivery as a method and as a status) can be
        # collinear; the pseudo-inverse fit leaves the treatment coefficient identified.
        warnings.simplefilter("ignore", SingularMatrixWarning)
        fit = sm.WLS(outcome, matrix, weights=weights).fit(cov_type="HC1")
    return float(fit.params[1]), float(fit.bse[1])


def covariate_matrix(
    log: ExperimentLog, covariates: Sequence[str] | None, notes: list[str]
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Numeric covariates as they are, categorical ones as indicators (first level dropped).

    By default, order_value and every feature. Missing values are a level of their own
    (categorical) or filled with the mean beside a missing-indicator column (numeric). A
    default column with no values or too many levels is left out (and said in ``notes``), an
    explicitly named one is an error.
    """
    explicit = covariates is not None
    names = list(covariates) if covariates is not None else _default_covariates(log)
    parts, used = [], []
    for name in names:
        problem, part = _encode(log.frame, name)
        if problem is None:
            parts.append(part)
            used.append(name)
        elif explicit:
            raise SchemaError(f"{log.source}: covariate {name!r} {problem}")
        else:
            notes.append(f"covariate {name} left out of the adjustment: it {problem}")
    if not parts:
        raise SchemaError(
            f"{log.source}: no usable pre-assignment covariates for regression adjustment; "
            "name numeric or categorical columns with --covariate"
        )
    return pd.concat(parts, axis=1), tuple(used)


def _default_covariates(log: ExperimentLog) -> list[str]:
    return (["order_value"] if log.has_order_value else []) + list(log.features)


def _encode(frame: pd.DataFrame, name: str) -> tuple[str | None, pd.DataFrame]:
    if name not in frame.columns or name in ("arm", "retained", "revenue", "propensity"):
        return "is not a pre-assignment column of the log", pd.DataFrame()
    column = frame[name]
    missing = column.isna()
    if missing.all():
        return "has no values", pd.DataFrame()
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        values = column.astype(float)
        problem = too_large(values)
        if not missing.any():
            return problem, values.to_frame(name)
        # Missing-indicator method: a covariate measured before assignment, with its gaps
        # filled and flagged, still adjusts without bias in a randomised test.
        filled = values.fillna(values.mean()).to_frame(name)
        return problem, filled.assign(**{f"{name}_missing": missing.astype(float)})
    if column.nunique() > MAX_COVARIATE_LEVELS:
        return f"has more than {MAX_COVARIATE_LEVELS} levels", pd.DataFrame()
    levels = column.astype(str).where(~missing, "(missing)")
    return None, pd.get_dummies(levels, prefix=name, drop_first=True, dtype=float)


def adjusted_effects(
    log: ExperimentLog,
    effects: pd.DataFrame,
    covariates: Sequence[str] | None,
    *,
    alpha: float,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Replace each effect by Lin's regression-adjusted one; report the variance it saved.

    Returns the new effects (normal intervals, ``method`` = ``regression_adjusted``), the
    adjustment table and the covariates used. Relative intervals of adjusted rows divide the
    interval by the control mean, taking that mean as known.
    """
    matrix, used = covariate_matrix(log, covariates, notes)
    frame = log.frame
    weights = 1.0 / frame["propensity"].to_numpy(dtype=float)
    arm = frame["arm"].to_numpy()
    values = matrix.to_numpy()
    fits: dict[tuple[str, str], tuple[float, float]] = {}
    for arm_name, metric in effects[["arm", "metric"]].itertuples(index=False):
        rows = (arm == arm_name) | (arm == log.control)
        treated = (arm[rows] == arm_name).astype(float)
        mirror = (arm_name, _MIRROR.get(str(metric), ""))
        if mirror in fits:
            # cancelled = 1 - retained on the same columns: the same fit, the effect negated.
            fits[(arm_name, metric)] = (-fits[mirror][0], fits[mirror][1])
            continue
        outcome = _outcome(frame, str(metric))[rows]
        fits[(arm_name, metric)] = lin_estimate(outcome, treated, values[rows], weights[rows])
    keys = list(zip(effects["arm"], effects["metric"], strict=True))
    estimates, errors = (np.array(v) for v in zip(*(fits[k] for k in keys), strict=True))
    return estimates, errors, used


def _outcome(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "revenue_per_order":
        return frame["revenue"].to_numpy(dtype=float)
    retained = frame["retained"].to_numpy(dtype=float)
    return 1.0 - retained if metric == "cancel_rate" else retained
