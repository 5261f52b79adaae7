"""Ranking, calibration and accuracy metrics for uplift scores.

Conventions shared by every function here:

* ``y`` is the outcome whose uplift is scored (``retained`` by default; any number works, e.g.
  ``revenue``); ``is_treated`` marks the rows of the treatment arm, the other rows are control.
* ``weights`` are inverse-propensity weights, ``1 / propensity`` of the logged arm. With them a
  log whose arm probabilities vary by order is scored without bias: every mean below is a
  weighted (Hajek) mean, so each arm's rows stand for the whole population. Without them all
  rows weigh 1 (a uniformly randomised log).
* Orders are ranked by decreasing score. Orders with equal scores form one group that enters
  the ranking together, so results never depend on row order (ties handled deterministically).
* ``share`` is the weighted share of orders ranked at or above a cut-off.

Off-policy value of a whole policy lives in :mod:`uplift.experiment.offpolicy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from uplift.exceptions import ConfigError, SchemaError, describe_rows
from uplift.experiment.weighted import estimates, sufficient_statistics

__all__ = [
    "Z95",
    "FloatArray",
    "as_vector",
    "auuc",
    "calibration_by_bucket",
    "qini_coefficient",
    "qini_curve",
    "sqrt_pehe",
    "uplift_at_k",
    "uplift_curve",
    "uplift_metrics_by_arm",
]

FloatArray = NDArray[np.float64]

#: Two-sided 95% normal quantile used by every interval in this package's metrics.
Z95 = NormalDist().inv_cdf(0.975)


# --------------------------------------------------------------------------------------------
# Input checks shared with uplift.experiment.offpolicy
# --------------------------------------------------------------------------------------------


def as_vector(values: ArrayLike, name: str, n: int | None = None) -> FloatArray:
    """Return ``values`` as a finite 1-D float array, checking its length against ``n``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise SchemaError(f"{name} must be one-dimensional; got shape {array.shape}")
    if n is not None and array.size != n:
        raise SchemaError(f"{name} has {array.size} values but the other inputs have {n}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise SchemaError(f"{name} must be finite; NaN or infinite at {describe_rows(bad)}")
    return array


def _as_treated(is_treated: ArrayLike, n: int) -> NDArray[np.bool_]:
    """Return the treatment indicator as bool, accepting bool or 0/1 values."""
    raw = as_vector(is_treated, "is_treated", n)
    bad = np.flatnonzero((raw != 0) & (raw != 1))
    if bad.size:
        raise SchemaError(f"is_treated must be 0/1 or bool; other values at {describe_rows(bad)}")
    return raw == 1


def _as_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    """Return positive weights (all ones when ``weights`` is None)."""
    if weights is None:
        return np.ones(n)
    w = as_vector(weights, "weights", n)
    bad = np.flatnonzero(w <= 0)
    if bad.size:
        raise SchemaError(
            f"weights must be > 0 (pass 1 / propensity of the logged arm); "
            f"got values <= 0 at {describe_rows(bad)}"
        )
    return w


def _inputs(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], FloatArray]:
    s = as_vector(score, "score")
    if s.size == 0:
        raise SchemaError("score is empty: at least one treated and one control row are needed")
    t = _as_treated(is_treated, s.size)
    if t.all() or not t.any():
        raise SchemaError(
            "is_treated must mark at least one treated and one control row; "
            f"got {int(t.sum())} treated of {t.size}"
        )
    return s, as_vector(y, "y", s.size), t, _as_weights(weights, s.size)


def _mean_or_nan(total: FloatArray, weight: FloatArray) -> FloatArray:
    out = np.full(total.shape, np.nan)
    np.divide(total, weight, out=out, where=weight > 0)
    return out


# --------------------------------------------------------------------------------------------
# Uplift and Qini curves
# --------------------------------------------------------------------------------------------


def _cumulative(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None
) -> pd.DataFrame:
    """Cumulative weighted sums at the end of every group of equal scores, best scores first."""
    s, yv, t, w = _inputs(score, y, is_treated, weights)
    order = np.argsort(-s, kind="stable")
    s, yv, t, w = s[order], yv[order], t[order], w[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    wt, wc = np.cumsum(w * t)[ends], np.cumsum(w * ~t)[ends]
    yt, yc = np.cumsum(w * yv * t)[ends], np.cumsum(w * yv * ~t)[ends]
    total = wt[-1] + wc[-1]
    return pd.DataFrame(
        {
            "threshold": s[ends],
            "share": (wt + wc) / total,
            "treated_share": wt / wt[-1],
            "n_treated": np.cumsum(t)[ends],
            "n_control": np.cumsum(~t)[ends],
            "top_uplift": _mean_or_nan(yt, wt) - _mean_or_nan(yc, wc),
        }
    )


def _curve(cum: pd.DataFrame, multiplier: str) -> pd.DataFrame:
    value = np.nan_to_num(cum["top_uplift"].to_numpy(), nan=0.0) * cum[multiplier].to_numpy()
    start = pd.DataFrame(
        {"threshold": [np.inf], "share": [0.0], "n_treated": [0], "n_control": [0]}
    ).assign(top_uplift=np.nan, value=0.0)
    points = cum[["threshold", "share", "n_treated", "n_control", "top_uplift"]].assign(value=value)
    return pd.concat([start, points], ignore_index=True)


def uplift_curve(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None = None
) -> pd.DataFrame:
    """Uplift curve: measured gain per order from treating the top ``share`` of the ranking.

    ``value = top_uplift * share`` where ``top_uplift`` is the difference in (weighted) mean
    outcome between treated and control orders ranked at or above ``threshold``. It estimates
    the extra outcome per order in the whole population if only the top ``share`` is treated;
    at ``share = 1`` it equals the overall difference in means. Where the top holds no treated or
    no control order, ``top_uplift`` is NaN and ``value`` is 0.

    Returns
    -------
    pd.DataFrame
        One row per group of equal scores plus a first row at ``share = 0``: ``threshold``
        (lowest score included), ``share``, ``n_treated``, ``n_control`` (unweighted counts),
        ``top_uplift`` and ``value``.
    """
    return _curve(_cumulative(score, y, is_treated, weights), "share")


def qini_curve(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None = None
) -> pd.DataFrame:
    """Qini curve, scaled per treated order: ``value = top_uplift * treated_share``.

    This is Radcliffe's Qini curve ``Y_t(k) - Y_c(k) * N_t(k) / N_c(k)`` divided by the total
    (weighted) number of treated orders, so it ends at the overall difference in means like the
    uplift curve. It differs from :func:`uplift_curve` only in its x-weighting: the top's share
    of the *treated* orders rather than of all orders. Columns as in :func:`uplift_curve`.
    """
    return _curve(_cumulative(score, y, is_treated, weights), "treated_share")


def _area_over_random(curve: pd.DataFrame) -> float:
    share, value = curve["share"].to_numpy(), curve["value"].to_numpy()
    return float(np.trapezoid(value, share) - value[-1] / 2)


def auuc(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """Area under the uplift curve above the random-ranking line.

    Normalisation: the trapezoid area under :func:`uplift_curve` over ``share`` in [0, 1],
    minus ``ate / 2``, the area under the straight line from (0, 0) to (1, ate) that a random
    ranking follows in expectation. So a random score gives about 0, a useful one > 0, and the
    unit is outcome per order (e.g. retained orders per order), comparable across models scored
    on the same log but not across logs with different effect sizes.
    """
    return _area_over_random(uplift_curve(score, y, is_treated, weights))


def qini_coefficient(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """Qini coefficient: area between :func:`qini_curve` and the random-ranking line.

    Normalised exactly like :func:`auuc` (random ranking about 0, unit outcome per order).
    """
    return _area_over_random(qini_curve(score, y, is_treated, weights))


def uplift_at_k(
    score: ArrayLike,
    y: ArrayLike,
    is_treated: ArrayLike,
    k: float,
    weights: ArrayLike | None = None,
) -> float:
    """Measured uplift (difference in weighted means) among the top-``k`` share of the ranking.

    The top is the smallest set of whole groups of equal scores whose ``share`` reaches ``k``;
    a tie group crossing the cut-off is taken whole, so the realised share can exceed ``k``.
    ``k = 1.0`` gives the overall difference in means. NaN when the top has no treated or no
    control order.
    """
    _check_k(k)
    return _uplift_at(_cumulative(score, y, is_treated, weights), k)


def _check_k(k: float) -> None:
    if not 0 < k <= 1:
        raise ConfigError(f"uplift_at_k: k must be a share in (0, 1]; got {k!r}")


def _uplift_at(cum: pd.DataFrame, k: float) -> float:
    # Relative slack: a cumulative share computed as 0.30000000000000004 still reaches k = 0.3.
    position = int(np.searchsorted(cum["share"].to_numpy(), k * (1 - 1e-12), side="left"))
    return float(cum["top_uplift"].iloc[min(position, len(cum) - 1)])


def _k_column(k: float) -> str:
    return "uplift_at_" + f"{k * 100:g}".replace(".", "_")


def uplift_metrics_by_arm(
    uplift: pd.DataFrame,
    log: pd.DataFrame,
    *,
    outcome: str = "retained",
    control: str = "control",
    ks: Sequence[float] = (0.1, 0.2, 0.3),
) -> pd.DataFrame:
    """Score every treatment arm's predicted uplift against that arm's and control's rows.

    Parameters
    ----------
    uplift
        Predicted uplift per order, one column per treatment arm (named by the arm), indexed
        like ``log`` (e.g. ``UpliftModel.predict_effects(log).uplift("retained")``).
    log
        The log: columns ``arm``, ``outcome`` and, when present, ``propensity`` (the logged
        arm's probability), which gives weights ``1 / propensity``.

    Returns
    -------
    pd.DataFrame
        One row per treatment arm found in ``log``, sorted by name: ``arm``, ``n_treated``,
        ``n_control``, ``ate`` (weighted difference in means), ``auuc``,
        ``qini_coefficient`` and one ``uplift_at_<percent>`` column per ``k`` in ``ks``.
    """
    for k in ks:
        _check_k(k)
    for column in ("arm", outcome):
        if column not in log.columns:
            raise SchemaError(f"log has no column {column!r}; columns: {list(log.columns)}")
    if not uplift.index.equals(log.index):
        raise SchemaError(
            "effects must be indexed like the log (same rows, same order); "
            "predict on the log's rows or align both frames before scoring"
        )
    arms = log["arm"].astype(str).to_numpy()
    if control not in set(arms):
        present = sorted({str(a) for a in arms})
        raise SchemaError(f"log has no rows of the control arm {control!r}; arms: {present}")
    weights = 1 / log["propensity"].to_numpy(float) if "propensity" in log.columns else None
    rows = []
    for arm in sorted({str(a) for a in arms} - {control}):
        if arm not in uplift.columns:
            raise SchemaError(f"predicted uplift has no column for arm {arm!r}")
        mask = (arms == arm) | (arms == control)
        cum = _cumulative(
            uplift[arm].to_numpy(float)[mask],
            log[outcome].to_numpy(float)[mask],
            arms[mask] == arm,
            None if weights is None else weights[mask],
        )
        row: dict[str, object] = {
            "arm": arm,
            "n_treated": int(cum["n_treated"].iloc[-1]),
            "n_control": int(cum["n_control"].iloc[-1]),
            "ate": _uplift_at(cum, 1.0),
            "auuc": _area_over_random(_curve(cum, "share")),
            "qini_coefficient": _area_over_random(_curve(cum, "treated_share")),
        }
        row.update({_k_column(k): _uplift_at(cum, k) for k in ks})
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Calibration and accuracy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Calibration:
    """Predicted against measured uplift per bucket of predicted uplift.

    Attributes
    ----------
    table
        One row per non-empty bucket, lowest predictions first: ``bucket`` (0-based),
        ``predicted_min``, ``predicted_max``, ``predicted`` (weighted mean prediction),
        ``measured`` (weighted difference in means), ``se`` (Welch / sandwich standard error),
        ``ci_lower``, ``ci_upper`` (normal 95%), ``n_treated``, ``n_control``, ``covers``
        (the interval contains ``predicted``). ``measured`` is NaN in a bucket without treated
        or without control orders, ``se`` also when either arm has a single order there.
    coverage
        Share of the buckets with an interval (``se`` finite and > 0) whose interval covers
        the prediction; about 0.95 for a well-calibrated model. The summary figures below use
        the same buckets and are NaN when there are none (or, for the slope, fewer than two
        distinct predictions).
    slope, slope_se, intercept
        Inverse-variance weighted least squares of ``measured`` on ``predicted`` across
        buckets; a calibrated model has slope 1 and intercept 0, a slope below 1 means
        predictions are too spread out.
    chi2, chi2_df, chi2_pvalue
        ``sum(((measured - predicted) / se) ** 2)`` over buckets with an interval, against a
        chi-squared law with one degree of freedom per bucket: a small p-value says the
        predictions are off by more than noise in some bucket.
    """

    table: pd.DataFrame
    coverage: float
    slope: float
    slope_se: float
    intercept: float
    chi2: float
    chi2_df: int
    chi2_pvalue: float


def _group_stats(frame: pd.DataFrame, keys: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Weighted mean, sandwich variance of that mean (NaN for one row), and count per group."""
    moments = sufficient_statistics(frame[[keys, "w", "y"]], [keys], {"y": "y"}, weight="w")
    stats = estimates(moments, ["y"]).set_index(keys)
    return stats["mean_y"], stats["var_y"], stats["n"]


def calibration_by_bucket(
    predicted_uplift: ArrayLike,
    y: ArrayLike,
    is_treated: ArrayLike,
    buckets: int = 10,
    weights: ArrayLike | None = None,
) -> Calibration:
    """Compare mean predicted uplift with measured uplift in buckets of predicted uplift.

    Buckets are equal-count quantiles of ``predicted_uplift`` over all rows; equal predictions
    always share a bucket, so with many ties fewer buckets come back. ``measured`` is the
    weighted difference in means between treated and control rows of the bucket, with a
    Welch-type standard error (sandwich form when weighted) and a normal 95% interval.
    """
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ConfigError(
            f"calibration_by_bucket: buckets must be an integer >= 1; got {buckets!r}"
        )
    pred, yv, t, w = _inputs(predicted_uplift, y, is_treated, weights)
    edges = np.quantile(pred, np.linspace(0, 1, buckets + 1)[1:-1])
    frame = pd.DataFrame(
        {
            # Consecutive labels even when ties merge quantile buckets.
            "bucket": np.unique(np.searchsorted(edges, pred, side="right"), return_inverse=True)[1],
            "pred": pred,
            "y": yv,
            "w": w,
        }
    )
    frame["wp"] = w * pred
    frame["key"] = frame["bucket"] * 2 + t  # one key per bucket and arm
    mean, var, count = _group_stats(frame, "key")
    by_bucket = frame.groupby("bucket", sort=True)
    table = pd.DataFrame(
        {
            "predicted_min": by_bucket["pred"].min(),
            "predicted_max": by_bucket["pred"].max(),
            "predicted": by_bucket["wp"].sum() / by_bucket["w"].sum(),
        }
    )
    index = table.index.to_numpy()
    treated, control = index * 2 + 1, index * 2
    table["measured"] = mean.reindex(treated).to_numpy() - mean.reindex(control).to_numpy()
    table["se"] = np.sqrt(var.reindex(treated).to_numpy() + var.reindex(control).to_numpy())
    table["ci_lower"] = table["measured"] - Z95 * table["se"]
    table["ci_upper"] = table["measured"] + Z95 * table["se"]
    table["n_treated"] = count.reindex(treated, fill_value=0).to_numpy()
    table["n_control"] = count.reindex(control, fill_value=0).to_numpy()
    table["covers"] = (table["ci_lower"] <= table["predicted"]) & (
        table["predicted"] <= table["ci_upper"]
    )
    table = table.rename_axis("bucket").reset_index()
    return _summarise_calibration(table)


def _summarise_calibration(table: pd.DataFrame) -> Calibration:
    from scipy import stats  # noqa: PLC0415 - scipy takes ~1 s to import; module light without it

    ok = table[np.isfinite(table["se"]) & (table["se"] > 0)]
    if ok.empty:
        return Calibration(table, np.nan, np.nan, np.nan, np.nan, np.nan, 0, np.nan)
    x, m, inv_var = ok["predicted"], ok["measured"], 1 / ok["se"] ** 2
    x_bar, m_bar = np.average(x, weights=inv_var), np.average(m, weights=inv_var)
    sxx = float((inv_var * (x - x_bar) ** 2).sum())
    slope = float((inv_var * (x - x_bar) * (m - m_bar)).sum() / sxx) if sxx > 0 else np.nan
    chi2 = float((((m - x) / ok["se"]) ** 2).sum())
    return Calibration(
        table=table,
        coverage=float(ok["covers"].mean()),
        slope=slope,
        # Known-variance WLS: the bucket standard errors set the scale, not the residuals.
        slope_se=float(np.sqrt(1 / sxx)) if sxx > 0 else np.nan,
        intercept=float(m_bar - slope * x_bar),
        chi2=chi2,
        chi2_df=len(ok),
        chi2_pvalue=float(stats.chi2.sf(chi2, len(ok))),
    )


def sqrt_pehe(predicted: ArrayLike, true: ArrayLike) -> float:
    """Root of the precision in estimating heterogeneous effects: ``sqrt(mean((pred - true)^2))``.

    Both inputs are per-order effects of the same shape (1-D, or orders x arms, in which case
    the mean runs over every cell). Only available where the true effect is known (simulator,
    semi-synthetic benchmarks such as IHDP).
    """
    p, q = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if p.shape != q.shape or p.size == 0:
        raise SchemaError(
            f"sqrt_pehe: predicted and true must have the same non-empty shape; "
            f"got {p.shape} and {q.shape}"
        )
    as_vector(p.ravel(), "predicted")
    as_vector(q.ravel(), "true")
    return float(np.sqrt(np.mean((p - q) ** 2)))
