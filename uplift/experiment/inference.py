"""Intervals for the readout: t intervals, always-valid intervals, regression adjustment.

Split from :mod:`uplift.experiment.readout` to keep modules small; the readout is the only caller.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError, describe_rows

__all__ = [
    "adjusted_effects",
    "confidence_sequence",
    "covariate_matrix",
    "interval",
    "lin_estimate",
    "too_large",
]

_MIRROR = {"cancel_rate": "retained_rate", "retained_rate": "cancel_rate"}
#: A categorical covariate with more levels than this is left out of the adjustment.
MAX_COVARIATE_LEVELS = 50
#: Larger values are data errors, not money or counts (float64 stops counting in units at
#: 2**53), and their squares would overflow the sums of the readout and the regression.
MAX_MAGNITUDE = 2.0**53


def too_large(values: pd.Series) -> str | None:
    """Which rows of ``values`` exceed :data:`MAX_MAGNITUDE` in size (inf included), if any."""
    huge = values.abs().gt(MAX_MAGNITUDE).to_numpy()
    if not huge.any():
        return None
    return f"has values beyond ±{MAX_MAGNITUDE:.3g} in {describe_rows(np.flatnonzero(huge) + 1)}"


def interval(estimate: Any, std_error: Any, df: Any, alpha: float) -> dict[str, np.ndarray]:
    """Two-sided t interval and p-value (normal where ``df`` is infinite), vectorised."""
    from scipy.stats import t  # noqa: PLC0415 - scipy takes ~1 s to import; module light without it

    est, se, dof = (np.asarray(a, dtype=float) for a in (estimate, std_error, df))
    with np.errstate(divide="ignore", invalid="ignore"):
        quantile = t.ppf(1 - alpha / 2, dof)
        p_value = 2 * t.sf(np.abs(est / se), dof)
    return {
        "estimate": est,
        "std_error": se,
        "df": dof,
        "ci_lower": est - quantile * se,
        "ci_upper": est + quantile * se,
        "p_value": p_value,
    }


def confidence_sequence(
    estimate: Any, variance: Any, planned_variance: Any, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (1 - alpha) interval of an asymptotically normal estimate.

    The normal-mixture boundary of the mixture sequential probability ratio test (Robbins
    1970; Johari, Pekelis and Walsh 2017, "Always valid inference", eq. for the normal
    mixture), in the asymptotic form of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
    (2023, "Time-uniform central limit theory and asymptotic confidence sequences", Thm 2.2):
    with V the estimate's variance now and tau^2 the mixture variance,

        half-width = sqrt( V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha) ).

    The interval holds at every look at once, so a team may look every week. tau^2 is chosen
    to make the interval narrowest when the variance reaches ``planned_variance`` (the
    variance at the planned sample size): tau^2 = V* (-2 log alpha + log(1 - 2 log alpha)),
    Waudby-Smith et al.'s optimal rho for a target sample size.
    """
    est, v, v_star = (np.asarray(a, dtype=float) for a in (estimate, variance, planned_variance))
    log_alpha = math.log(alpha)
    tau2 = v_star * (-2 * log_alpha + math.log(1 - 2 * log_alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * log_alpha))
    return est - half, est + half


# --------------------------------------------------------------------------------------------
# Regression adjustment


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
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
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
    estimates, errors = (np.array(v) for v in zip(*(fits[k] for k in _keys(effects)), strict=True))
    adjusted = _replace(effects, estimates, errors, alpha)
    return adjusted, _adjustment_table(effects, errors), used


def _keys(effects: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(effects["arm"], effects["metric"], strict=True))


def _outcome(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "revenue_per_order":
        return frame["revenue"].to_numpy(dtype=float)
    retained = frame["retained"].to_numpy(dtype=float)
    return 1.0 - retained if metric == "cancel_rate" else retained


def _replace(
    effects: pd.DataFrame, estimate: np.ndarray, error: np.ndarray, alpha: float
) -> pd.DataFrame:
    out = effects.copy()
    fresh = interval(estimate, error, np.full(len(estimate), np.inf), alpha)
    for column in ("std_error", "df", "ci_lower", "ci_upper", "p_value"):
        out[column] = fresh[column]
    out["difference"] = estimate
    control = out["control_mean"].to_numpy()
    out["relative_difference"] = estimate / control
    out["relative_ci_lower"] = fresh["ci_lower"] / control
    out["relative_ci_upper"] = fresh["ci_upper"] / control
    out["method"] = "regression_adjusted"
    return out


def _adjustment_table(effects: pd.DataFrame, adjusted: np.ndarray) -> pd.DataFrame:
    raw = effects["std_error"].to_numpy()
    return pd.DataFrame(
        {
            "arm": effects["arm"].to_numpy(),
            "metric": effects["metric"].to_numpy(),
            "std_error_unadjusted": raw,
            "std_error_adjusted": adjusted,
            "variance_reduction": 1 - (adjusted / raw) ** 2,
            "interval_width_ratio": adjusted / raw,
        }
    )
