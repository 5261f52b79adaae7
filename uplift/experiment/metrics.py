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
    "QINI_CUTOFFS",
    "QINI_RESAMPLES",
    "Z95",
    "FloatArray",
    "as_vector",
    "auuc",
    "calibration_by_bucket",
    "qini_coefficient",
    "qini_curve",
    "qini_interval",
    "sqrt_pehe",
    "uplift_at_k",
    "uplift_curve",
    "uplift_metrics_by_arm",
]

FloatArray = NDArray[np.float64]

#: Two-sided 95% normal quantile used by every interval in this package's metrics.
Z95 = NormalDist().inv_cdf(0.975)
#: Bootstrap resamples of a Qini interval: the 2.5% and 97.5% points are then the 5th and
#: 195th of 200 resampled values.
QINI_RESAMPLES = 200
#: Cut-offs at which a bootstrap resample's Qini curve is taken (see qini_interval).
QINI_CUTOFFS = 2_000
# Resamples x rows held in memory at once by the bootstrap (32 MB per array of 8-byte numbers).
BOOTSTRAP_CELLS = 4_000_000


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


@dataclass(frozen=True, eq=False)
class _Ranked:
    """Rows sorted by decreasing score; ``ends`` the last row of every group of equal scores."""

    score: FloatArray
    y: FloatArray
    treated: NDArray[np.bool_]
    weights: FloatArray
    ends: NDArray[np.int64]

    @classmethod
    def of(
        cls, score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None
    ) -> _Ranked:
        s, yv, t, w = _inputs(score, y, is_treated, weights)
        order = np.argsort(-s, kind="stable")
        s, yv, t, w = s[order], yv[order], t[order], w[order]
        return cls(s, yv, t, w, np.flatnonzero(np.r_[s[1:] != s[:-1], True]))

    def sums(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Weighted treated and control totals and the top's uplift at every group's end."""
        t, w = self.treated, self.weights

        def cumulative(values: FloatArray) -> FloatArray:
            return np.cumsum(values)[self.ends]

        wt, wc = cumulative(w * t), cumulative(w * ~t)
        yt, yc = cumulative(w * self.y * t), cumulative(w * self.y * ~t)
        return wt, wc, _mean_or_nan(yt, wt) - _mean_or_nan(yc, wc)


def _cumulative(
    score: ArrayLike, y: ArrayLike, is_treated: ArrayLike, weights: ArrayLike | None
) -> pd.DataFrame:
    """Cumulative weighted sums at the end of every group of equal scores, best scores first."""
    return _cumulative_of(_Ranked.of(score, y, is_treated, weights))


def _cumulative_of(ranked: _Ranked) -> pd.DataFrame:
    wt, wc, top = ranked.sums()
    return pd.DataFrame(
        {
            "threshold": ranked.score[ranked.ends],
            "share": (wt + wc) / (wt[-1] + wc[-1]),
            "treated_share": wt / wt[-1],
            "n_treated": np.cumsum(ranked.treated)[ranked.ends],
            "n_control": np.cumsum(~ranked.treated)[ranked.ends],
            "top_uplift": top,
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
    return float(_area(curve["share"].to_numpy(), curve["value"].to_numpy()))


def _area(share: FloatArray, value: FloatArray) -> FloatArray:
    """Trapezoid area under ``value`` over ``share`` minus the random line's (last axis)."""
    return np.trapezoid(value, share, axis=-1) - value[..., -1] / 2


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


def qini_interval(
    score: ArrayLike,
    y: ArrayLike,
    is_treated: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    resamples: int = QINI_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`qini_coefficient` at ``level``.

    Treated and control rows are resampled separately, so every resample keeps the arms' sizes
    as logged, and the ranking is kept. The interval is for the Qini of this ranking on the
    population the rows were drawn from: one above 0 says the ranking beats a random one beyond
    noise. On more than :data:`QINI_CUTOFFS` groups of equal scores the resamples' curves are
    taken at that many cut-offs spread over the ranking (their area moves by far less than
    the resamples spread), and the interval is moved by the difference between the Qini at every
    cut-off and at those.
    """
    _check_resamples(resamples)
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1); got {level!r}")
    return _interval(_Ranked.of(score, y, is_treated, weights), resamples, level, seed)


def _check_resamples(resamples: object) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"resamples must be a positive integer; got {resamples!r}")


def _interval(ranked: _Ranked, resamples: int, level: float, seed: int) -> tuple[float, float]:
    """:func:`qini_interval` of rows already ranked."""
    ends = ranked.ends
    cutoffs = ends[np.unique(np.linspace(0, ends.size - 1, QINI_CUTOFFS).round().astype(int))]
    arms = [_Arm.of(ranked, cutoffs, rows) for rows in (ranked.treated, ~ranked.treated)]
    rng = np.random.default_rng(seed)
    block = max(1, BOOTSTRAP_CELLS // ranked.y.size)
    areas = []
    for first in range(0, resamples, block):
        size = min(block, resamples - first)
        drawn = [rng.integers(0, arm.size, size=(size, arm.size)) for arm in arms]
        areas.append(_areas_at(arms, cutoffs.size, drawn))
    low, high = np.quantile(np.concatenate(areas), [(1 - level) / 2, (1 + level) / 2])
    every = [np.arange(arm.size)[None, :] for arm in arms]
    qini = _area_over_random(_curve(_cumulative_of(ranked), "treated_share"))
    shift = qini - _areas_at(arms, cutoffs.size, every)[0]
    return float(low + shift), float(high + shift)


@dataclass(frozen=True, eq=False)
class _Arm:
    """One arm's rows of a ranking: the segment of the ranking each falls in (segment ``k`` ends
    at cut-off ``k``), its weight and its weight x outcome."""

    segment: NDArray[np.int64]
    weight: FloatArray
    weighted_y: FloatArray

    @classmethod
    def of(cls, ranked: _Ranked, cutoffs: NDArray[np.int64], rows: NDArray[np.bool_]) -> _Arm:
        segment = np.searchsorted(cutoffs, np.flatnonzero(rows))
        weight = ranked.weights[rows]
        return cls(segment, weight, weight * ranked.y[rows])

    @property
    def size(self) -> int:
        return self.segment.size

    def totals(self, drawn: NDArray[np.int64], points: int) -> tuple[FloatArray, FloatArray]:
        """Cumulative weight and weight x outcome at every cut-off, for each row of ``drawn``
        (the positions, among this arm's rows, drawn in one resample)."""
        keys = (np.arange(len(drawn))[:, None] * points + self.segment[drawn]).ravel()

        def cumulative(values: FloatArray) -> FloatArray:
            sums = np.bincount(keys, weights=values[drawn].ravel(), minlength=len(drawn) * points)
            return np.cumsum(sums.reshape(len(drawn), points), axis=1)

        return cumulative(self.weight), cumulative(self.weighted_y)


def _areas_at(arms: list[_Arm], points: int, drawn: list[NDArray[np.int64]]) -> FloatArray:
    """The Qini coefficient of each resample (treated arm first), its curve taken at ``points``
    cut-offs."""
    (wt, yt), (wc, yc) = (arm.totals(rows, points) for arm, rows in zip(arms, drawn, strict=True))
    top = np.nan_to_num(_mean_or_nan(yt, wt) - _mean_or_nan(yc, wc), nan=0.0)
    start = np.zeros((len(wt), 1))
    share = np.hstack([start, (wt + wc) / (wt[:, -1:] + wc[:, -1:])])
    return _area(share, np.hstack([start, top * wt / wt[:, -1:]]))


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
    resamples: int = 0,
    seed: int = 0,
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
        ``qini_coefficient`` and one ``uplift_at_<percent>`` column per ``k`` in ``ks``; with
        ``resamples`` (> 0) also ``qini_ci_lower`` and ``qini_ci_upper``, the Qini's 95%
        :func:`qini_interval` from that many resamples drawn with ``seed``.
    """
    for k in ks:
        _check_k(k)
    if resamples:
        _check_resamples(resamples)
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
        ranked = _Ranked.of(
            uplift[arm].to_numpy(float)[mask],
            log[outcome].to_numpy(float)[mask],
            arms[mask] == arm,
            None if weights is None else weights[mask],
        )
        cum = _cumulative_of(ranked)
        row: dict[str, object] = {
            "arm": arm,
            "n_treated": int(cum["n_treated"].iloc[-1]),
            "n_control": int(cum["n_control"].iloc[-1]),
            "ate": _uplift_at(cum, 1.0),
            "auuc": _area_over_random(_curve(cum, "share")),
            "qini_coefficient": _area_over_random(_curve(cum, "treated_share")),
        }
        row.update({_k_column(k): _uplift_at(cum, k) for k in ks})
        if resamples:
            low, high = _interval(ranked, resamples, 0.95, seed)
            row.update(qini_ci_lower=low, qini_ci_upper=high)
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
