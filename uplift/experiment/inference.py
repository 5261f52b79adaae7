"""Intervals for the readout: t intervals, always-valid intervals, the size check of values.

Split from :mod:`uplift.experiment.readout` to keep modules small; regression adjustment is in
:mod:`uplift.experiment.adjustment`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from uplift.exceptions import describe_rows

__all__ = ["MAX_MAGNITUDE", "confidence_sequence", "interval", "too_large"]

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
