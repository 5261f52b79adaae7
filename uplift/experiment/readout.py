"""Read out a holdout test: per-arm effects with intervals, the sample-ratio check, segments.

Every treatment arm is compared with the control arm on three metrics: ``cancel_rate`` (the
mean of ``1 - retained``), ``retained_rate`` and ``revenue_per_order``. Means are
inverse-propensity weighted (Hajek: sum(w y) / sum(w), w = 1 / propensity), so a log written by
a targeting policy is read without bias. When propensities are constant within each arm (a
randomised test) the weights cancel: the estimates are the plain means and the intervals are
Welch's, exactly.

The variance of a weighted mean is the linearised (sandwich) one, sum(w^2 (y - mean)^2) /
sum(w)^2, scaled by n / (n - 1) so that it equals Welch's s^2 / n for equal weights; both come
from :mod:`uplift.experiment.weighted`. Every figure comes from per-arm (and per-segment) sums
that the engine holding the rows computes: DuckDB over a Parquet or CSV file
(:func:`uplift.experiment.scan.scan_file`) or over an in-memory log, or Spark
(:mod:`uplift.spark.readout`); :func:`readout_table` turns the sums into the readout, so ten
million rows read out in seconds without ever being held in memory. Regression adjustment is in
:mod:`uplift.experiment.adjustment`, always-valid intervals in :mod:`uplift.experiment.inference`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import ConfigError, SchemaError, check_option
from uplift.experiment.adjustment import adjusted_effects
from uplift.experiment.design import Design
from uplift.experiment.inference import MAX_MAGNITUDE, confidence_sequence, interval
from uplift.experiment.logtable import LogTable
from uplift.experiment.power import CORRECTIONS, Correction
from uplift.experiment.sample_ratio import SampleRatioCheck, check_sample_ratio
from uplift.experiment.scan import table_from_log
from uplift.experiment.weighted import estimates, sums_query

__all__ = [
    "Readout",
    "adjust_p_values",
    "arm_statistics",
    "difference_in_means",
    "readout",
    "readout_table",
]

#: Metric name -> SQL expression of its per-order outcome.
METRIC_OUTCOMES: dict[str, str] = {
    "cancel_rate": "1.0 - retained",
    "retained_rate": "CAST(retained AS DOUBLE)",
    "revenue_per_order": "CAST(revenue AS DOUBLE)",
}
#: A column with more distinct values than this is not a segment (it is an id or a number).
MAX_SEGMENTS = 50
#: Columns of :attr:`Readout.effects` (and of :attr:`Readout.segments`, after ``segment``).
EFFECT_COLUMNS: tuple[str, ...] = (
    "arm",
    "metric",
    "n_control",
    "n_arm",
    "control_mean",
    "arm_mean",
    "difference",
    "std_error",
    "df",
    "ci_lower",
    "ci_upper",
    "relative_difference",
    "relative_ci_lower",
    "relative_ci_upper",
    "p_value",
    "p_value_adjusted",
    "sequential_ci_lower",
    "sequential_ci_upper",
    "method",
)


@dataclass(frozen=True)
class Readout:
    """A holdout test read out: raw, unrounded numbers for the CLI and the weekly report.

    Attributes
    ----------
    arms : DataFrame
        One row per arm, control first: ``arm``, ``n``, ``share`` (of the log's orders),
        ``retained_rate``, ``cancel_rate``, ``revenue_per_order`` (weighted means).
    effects : DataFrame
        One row per treatment arm and metric, columns :data:`EFFECT_COLUMNS`. ``difference`` is
        arm minus control (for ``cancel_rate`` a negative difference is good; for the others a
        positive one). ``relative_difference`` is ``difference / control_mean``; ``df`` is the
        Welch degrees of freedom (infinite for the normal intervals of adjusted rows);
        ``p_value_adjusted`` is corrected over the arms of one metric; ``method`` is
        ``difference_in_means`` or ``regression_adjusted``. ``sequential_ci_*`` are NaN unless
        always-valid intervals were asked for.
    srm : SampleRatioCheck or None
        The sample-ratio check; None when there is no allocation to check against (a targeting
        policy's log read without its design).
    segments : DataFrame or None
        ``segment`` (the level of :attr:`segment_column`, as text) then the effects columns,
        per level; p-values are corrected within each level. None unless a segment was asked.
    adjustment : DataFrame or None
        Per arm and metric: ``std_error_unadjusted``, ``std_error_adjusted``,
        ``variance_reduction`` (1 - ratio of variances) and ``interval_width_ratio``. None
        unless regression adjustment was asked for; then ``covariates`` names what it used.
    weighted : bool
        Whether propensities vary within an arm, so that the inverse-propensity weights matter.
    """

    arms: pd.DataFrame
    effects: pd.DataFrame
    srm: SampleRatioCheck | None
    segments: pd.DataFrame | None
    adjustment: pd.DataFrame | None
    control: str
    alpha: float
    correction: Correction
    weighted: bool
    sequential: bool
    covariates: tuple[str, ...]
    segment_column: str | None
    source: str
    notes: tuple[str, ...]

    @property
    def srm_failed(self) -> bool:
        """Whether the sample-ratio check failed (the test is broken; do not trust effects)."""
        return self.srm is not None and not self.srm.passed

    def to_dict(self) -> dict[str, Any]:
        """Every figure, unrounded, as plain containers (for ``--json``)."""
        srm = None
        if self.srm is not None:
            srm = {
                "passed": self.srm.passed,
                "statistic": self.srm.statistic,
                "p_value": self.srm.p_value,
                "threshold": self.srm.threshold,
                "allocation_source": self.srm.allocation_source,
                "counts": self.srm.counts,
            }
        return {
            "source": self.source,
            "control": self.control,
            "alpha": self.alpha,
            "correction": self.correction,
            "weighted": self.weighted,
            "sequential": self.sequential,
            "covariates": list(self.covariates),
            "segment_column": self.segment_column,
            "notes": list(self.notes),
            "srm": srm,
            "arms": self.arms,
            "effects": self.effects,
            "segments": self.segments,
            "adjustment": self.adjustment,
        }


def readout(
    log: ExperimentLog,
    *,
    design: Design | None = None,
    alpha: float | None = None,
    correction: Correction | None = None,
    adjust: bool = False,
    covariates: Sequence[str] | None = None,
    sequential: bool = False,
    segment: str | None = None,
) -> Readout:
    """Read out ``log`` against its control arm.

    ``alpha`` and ``correction`` default to the design's (else 0.05 and Holm). ``adjust`` uses
    regression adjustment on ``covariates`` (default: order_value and the log's features);
    ``sequential`` adds always-valid intervals, tuned to the design's planned sample size when
    a design is given; ``segment`` names a categorical column to break the effects down by.
    """
    return readout_table(
        table_from_log(log),
        design=design,
        alpha=alpha,
        correction=correction,
        adjust=adjust,
        covariates=covariates,
        sequential=sequential,
        segment=segment,
    )


def readout_table(
    log: LogTable,
    *,
    design: Design | None = None,
    alpha: float | None = None,
    correction: Correction | None = None,
    adjust: bool = False,
    covariates: Sequence[str] | None = None,
    sequential: bool = False,
    segment: str | None = None,
) -> Readout:
    """:func:`readout` of a log held by an SQL engine (a file, a frame, a Spark DataFrame).

    Only sums leave the engine: per arm, per segment and arm, and with ``adjust`` the
    covariates' cross-products and the residual sums (:mod:`uplift.experiment.adjustment`).
    """
    alpha = alpha if alpha is not None else design.alpha if design else 0.05
    correction = correction or (design.correction if design else "holm")
    check_option("correction", correction, CORRECTIONS)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha!r}")
    if design is not None and design.control != log.control:
        raise ConfigError(
            f"the design's control arm is {design.control!r} but the log was read with "
            f"control {log.control!r}; pass --control {design.control}"
        )
    metrics = _metrics(log)
    if log.has("revenue"):
        _refuse_huge_revenue(log)
    notes = list(log.notes)
    stats = arm_statistics(outcome_moments(log, ["arm"], metrics), metrics)
    weighted = bool((stats["propensity_max"] - stats["propensity_min"] > 1e-12).any())
    srm = _sample_ratio(log, design, stats, weighted, notes)
    effects = compare_arms(stats, log.control, metrics, alpha=alpha, correction=correction)
    adjustment: pd.DataFrame | None = None
    used: tuple[str, ...] = ()
    if adjust:
        effects, adjustment, used = adjusted_effects(
            log, effects, covariates, alpha=alpha, notes=notes
        )
        effects = _correct(effects, [], correction)
    if sequential:
        effects = _with_sequence(effects, design, alpha, notes)
    segments = None
    if segment is not None:
        segments = _segments(log, segment, metrics, alpha, correction)
    return Readout(
        arms=_arm_table(stats, log),
        effects=effects.reset_index(drop=True),
        srm=srm,
        segments=segments,
        adjustment=adjustment,
        control=log.control,
        alpha=alpha,
        correction=correction,
        weighted=weighted,
        sequential=sequential,
        covariates=used,
        segment_column=segment,
        source=log.source,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Aggregation


def _metrics(log: LogTable) -> list[str]:
    metrics = []
    if log.has("retained"):
        metrics += ["cancel_rate", "retained_rate"]
    if log.has("revenue"):
        metrics.append("revenue_per_order")
    return metrics


def _refuse_huge_revenue(log: LogTable) -> None:
    """Revenue beyond 2**53 (or infinite) is a data error whose square would overflow."""
    condition = "NOT coalesce(abs(revenue) <= ? OR isnan(revenue), true)"
    found = log.query(f"SELECT {log.dialect.count_if(condition)} AS n FROM log", [MAX_MAGNITUDE])
    if int(found["n"].iloc[0]) > 0:
        rows = log.rows_where(condition, [MAX_MAGNITUDE])
        raise SchemaError(
            f"{log.source}: column revenue has values beyond ±{MAX_MAGNITUDE:.3g} in {rows}; "
            "fix or drop those rows"
        )


def outcome_moments(
    log: LogTable,
    by: Sequence[str],
    metrics: Sequence[str],
    segment: str | None = None,
    params: Sequence[Any] = (),
) -> pd.DataFrame:
    """Per group of ``by``: n, the sums of w and w^2, and per metric sums of w y, w^2 y, w^2 y^2.

    ``w`` is 1 / propensity; see :func:`uplift.experiment.weighted.sufficient_statistics`.
    ``propensity_min`` and ``propensity_max`` tell whether the weights vary within a group.
    ``segment``, when given, is the SQL of the ``segment`` key, with its ``params``.
    """
    relation = "log" if segment is None else f"(SELECT *, {segment} AS segment FROM log) AS s"
    query = sums_query(
        relation,
        by,
        {m: METRIC_OUTCOMES[m] for m in metrics},
        extra={"propensity_min": "min(propensity)", "propensity_max": "max(propensity)"},
        quote=log.dialect.quote,
        total=log.dialect.total,
    )
    return log.query(query, params)


def arm_statistics(moments: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Add ``mean_<metric>`` and ``var_<metric>`` (the variance of that mean) to the moments."""
    return estimates(moments, metrics)


# --------------------------------------------------------------------------------------------
# Comparison


def difference_in_means(
    arm_mean: Any,
    arm_var: Any,
    n_arm: Any,
    control_mean: Any,
    control_var: Any,
    n_control: Any,
    *,
    alpha: float,
) -> dict[str, np.ndarray]:
    """Welch comparison of two means, given each mean's variance (its squared standard error).

    Vectorised: every argument may be an array (one comparison per element). Returns
    ``difference``, ``std_error``, ``df`` (Welch-Satterthwaite), ``ci_lower``, ``ci_upper``,
    ``p_value`` and the relative difference with its delta-method interval.
    """
    mt, vt, nt = (np.asarray(a, dtype=float) for a in (arm_mean, arm_var, n_arm))
    mc, vc, nc = (np.asarray(a, dtype=float) for a in (control_mean, control_var, n_control))
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = vt + vc
        df = variance**2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
        result = interval(mt - mc, np.sqrt(variance), df, alpha)
        relative_se = np.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
        relative = interval(mt / mc - 1, relative_se, df, alpha)
    result["relative_difference"] = relative["estimate"]
    result["relative_ci_lower"] = relative["ci_lower"]
    result["relative_ci_upper"] = relative["ci_upper"]
    result["difference"] = result.pop("estimate")
    return result


def compare_arms(
    stats: pd.DataFrame,
    control: str,
    metrics: Sequence[str],
    *,
    alpha: float,
    correction: Correction,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Every treatment arm against control within each group of ``by``, for every metric."""
    keys = list(by)
    treated = stats[stats["arm"] != control]
    controls = stats[stats["arm"] == control]
    if keys:
        pairs = treated.merge(controls, on=keys, suffixes=("", "_control"))
    else:
        pairs = treated.merge(controls, how="cross", suffixes=("", "_control"))
    frames = []
    for m in metrics:
        welch = difference_in_means(
            pairs[f"mean_{m}"],
            pairs[f"var_{m}"],
            pairs["n"],
            pairs[f"mean_{m}_control"],
            pairs[f"var_{m}_control"],
            pairs["n_control"],
            alpha=alpha,
        )
        frame = pd.DataFrame(
            {
                **{k: pairs[k].astype(str).to_numpy() for k in keys},
                "arm": pairs["arm"].to_numpy(),
                "metric": m,
                "n_control": pairs["n_control"].to_numpy(),
                "n_arm": pairs["n"].to_numpy(),
                "control_mean": pairs[f"mean_{m}_control"].to_numpy(),
                "arm_mean": pairs[f"mean_{m}"].to_numpy(),
                **welch,
            }
        )
        frames.append(frame)
    effects = pd.concat(frames, ignore_index=True)
    effects["method"] = "difference_in_means"
    effects["sequential_ci_lower"] = np.nan
    effects["sequential_ci_upper"] = np.nan
    return _correct(effects, keys, correction)[[*keys, *EFFECT_COLUMNS]]


def adjust_p_values(p_values: Any, correction: Correction) -> np.ndarray:
    """Holm's step-down (or Bonferroni) adjusted p-values of one family; NaN stays NaN.

    Written out rather than taken from statsmodels' ``multipletests`` (which the tests compare
    it with) because that function runs a full garbage collection on every Holm call, which
    costs about a second per call beside a ten-million-row log.
    """
    p = np.asarray(p_values, dtype=float)
    known = ~np.isnan(p)
    m = int(known.sum())
    out = p.copy()
    if correction == "none" or m == 0:
        return out
    if correction == "bonferroni":
        out[known] = np.minimum(1.0, p[known] * m)
        return out
    order = np.argsort(p[known])
    # The i-th smallest p-value is multiplied by (m - i), then made monotone.
    stepped = np.maximum.accumulate(p[known][order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, stepped)
    out[known] = adjusted
    return out


def _correct(effects: pd.DataFrame, keys: list[str], correction: Correction) -> pd.DataFrame:
    """``p_value_adjusted``: corrected over the arms of each metric within each group."""
    out = effects.copy()
    groups = out.groupby([*keys, "metric"], sort=False)["p_value"]
    out["p_value_adjusted"] = groups.transform(lambda p: adjust_p_values(p, correction))
    return out


def _with_sequence(
    effects: pd.DataFrame, design: Design | None, alpha: float, notes: list[str]
) -> pd.DataFrame:
    variance = effects["std_error"].to_numpy() ** 2
    if design is None:
        planned = variance
        notes.append(
            "sequential intervals are tuned to the current sample size; pass the design "
            "(--design) to tune them to the planned size before the test starts"
        )
    else:
        # Variance shrinks as 1/n: scale today's variance to the planned number of orders.
        now = (effects["n_control"] + effects["n_arm"]).to_numpy(dtype=float)
        planned = variance * now / (design.n_control + design.n_per_arm)
    lower, upper = confidence_sequence(effects["difference"].to_numpy(), variance, planned, alpha)
    out = effects.copy()
    out["sequential_ci_lower"] = lower
    out["sequential_ci_upper"] = upper
    return out


# --------------------------------------------------------------------------------------------
# Sample ratio, segments, arm table


def _sample_ratio(
    log: LogTable,
    design: Design | None,
    stats: pd.DataFrame,
    weighted: bool,
    notes: list[str],
) -> SampleRatioCheck | None:
    counts = pd.Series(stats["n"].to_numpy(), index=stats["arm"].to_numpy())
    if design is not None:
        return check_sample_ratio(counts, design.allocation, allocation_source="design")
    if weighted:
        notes.append(
            "propensities vary within arms (a targeting policy): no allocation to check the "
            "sample ratio against; pass the design (--design) to check it"
        )
        return None
    if log.propensity_given:
        shares = dict(zip(stats["arm"], stats["propensity_min"].astype(float), strict=True))
        return check_sample_ratio(counts, shares, allocation_source="propensity")
    notes.append("no design given: the sample-ratio check assumes equal shares for all arms")
    equal = dict.fromkeys(log.arms, 1 / len(log.arms))
    return check_sample_ratio(counts, equal, allocation_source="equal shares assumed")


def _segments(
    log: LogTable, column: str, metrics: list[str], alpha: float, correction: Correction
) -> pd.DataFrame:
    if not log.has(column) or column in ("arm", "order_id"):
        present = [c for c in log.columns if c not in ("arm", "order_id")]
        raise SchemaError(
            f"{log.source}: segment column {column!r} not found; columns: {', '.join(present)}"
        )
    quoted = log.dialect.quote(column)
    found = log.query(f"SELECT count(DISTINCT {quoted}) + max(CASE WHEN {quoted} IS NULL "
                      f"THEN 1 ELSE 0 END) AS levels FROM log")  # fmt: skip
    levels = int(found["levels"].iloc[0])
    if levels > MAX_SEGMENTS:
        raise ConfigError(
            f"{log.source}: segment column {column!r} has {levels} distinct values; a segment "
            f"must be categorical (at most {MAX_SEGMENTS}); bin it into a new column first"
        )
    segment, params = _segment_labels(log, column)
    stats = arm_statistics(
        outcome_moments(log, ["segment", "arm"], metrics, segment, params), metrics
    )
    return compare_arms(
        stats, log.control, metrics, alpha=alpha, correction=correction, by=["segment"]
    )


def _segment_labels(log: LogTable, column: str) -> tuple[str, tuple[Any, ...]]:
    """SQL of the segment's label: each value as pandas writes it as text; missing stays so."""
    quoted = log.dialect.quote(column)
    values = log.query(f"SELECT DISTINCT {quoted} AS v FROM log")["v"]
    present = values[values.notna()]
    labels = present.astype(str).tolist()
    raw = [v.item() if isinstance(v, np.generic) else v for v in present.tolist()]
    if log.kinds.get(column) == "text":
        return quoted, ()
    cases = " ".join("WHEN ? THEN ?" for _ in raw)
    params = tuple(p for value, label in zip(raw, labels, strict=True) for p in (value, label))
    return f"(CASE {quoted} {cases} END)", params


def _arm_table(stats: pd.DataFrame, log: LogTable) -> pd.DataFrame:
    table = pd.DataFrame({"arm": stats["arm"], "n": stats["n"]})
    table["share"] = table["n"] / table["n"].sum()
    for m in METRIC_OUTCOMES:
        if f"mean_{m}" in stats:
            table[m] = stats[f"mean_{m}"]
    # Control first, then the treatment arms sorted, as ExperimentLog.arms orders them.
    return table.sort_values("arm", key=lambda arms: arms.ne(log.control)).reset_index(drop=True)
