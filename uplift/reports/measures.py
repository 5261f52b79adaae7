"""The report's own figures, computed from a week's log and stored predictions (never a refit).

Means are inverse-propensity weighted (Hajek, ``w = 1 / propensity``) with sandwich standard
errors, as in :mod:`uplift.experiment.readout`, so a log whose arm probabilities vary is read
without bias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.experiment.holdout import PolicyReadout
from uplift.experiment.metrics import Z95, calibration_by_bucket, qini_curve
from uplift.experiment.weighted import estimates, sufficient_statistics
from uplift.reports.results import Headline, LearnCheck

__all__ = [
    "arm_value",
    "base_rates",
    "headline",
    "learn_check",
    "mix_shift",
    "policy_headline",
    "qini_points",
    "ratio_interval",
]

#: Family-wise error rate of the learn check across arms (Bonferroni).
LEARN_ALPHA = 0.05
#: Fewest orders in either group for an arm to be checked: below it the normal interval of a
#: difference of rates is not to be trusted (two held-out orders, both kept, have no spread).
MIN_LEARN_GROUP = 30
#: A standardised mean difference above this is a visible shift of the order mix.
MIX_SHIFT = 0.1


def ratio_stats(frame: pd.DataFrame, outcome: str, scale: np.ndarray) -> pd.DataFrame:
    """Per arm: orders, summed ``scale``, ratio ``sum(w y) / sum(w scale)`` and its variance.

    The ratio's variance is the linearised (sandwich) one of
    :func:`uplift.experiment.weighted.ratio_estimate`. With ``scale`` = 1 it is the Hajek mean.
    """
    data = pd.DataFrame(
        {
            "arm": frame["arm"].to_numpy(),
            "propensity": frame["propensity"].to_numpy(float),
            "y": frame[outcome].to_numpy(float),
            "s": np.asarray(scale, dtype=float),
        }
    )
    moments = sufficient_statistics(data, ["arm"], {"y": "y"}, scale="s", extra={"s": "fsum(s)"})
    stats = estimates(moments, ["y"]).set_index("arm")
    # An arm of one order has no spread to measure: it counts as exact (variance 0) rather
    # than blanking every interval it enters, as the report has always done.
    var = stats["var_y"].where(stats["n"] > 1, 0.0)
    return pd.DataFrame(
        {"orders": stats["n"], "scale": stats["s"], "ratio": stats["mean_y"], "var": var}
    )


def _protected(stats: pd.DataFrame, control: str) -> tuple[float, float]:
    """Total over treatment arms of (arm ratio - control ratio) x the arm's scale, and its se.

    Every arm is compared with the same control, so the control's variance enters once, with
    the treated scale's total as its weight.
    """
    c_ratio, c_var = stats.loc[control, ["ratio", "var"]].to_numpy(float)
    t = stats.drop(index=control)
    total = float((t["scale"] * (t["ratio"] - c_ratio)).sum())
    var = float((t["scale"] ** 2 * t["var"]).sum()) + float(t["scale"].sum()) ** 2 * c_var
    return total, float(np.sqrt(var))


def _scale(log: ExperimentLog) -> np.ndarray:
    """Order value at risk per order (1 per order when the log has no order_value)."""
    if log.has_order_value:
        return np.asarray(log.frame["order_value"].to_numpy(float))
    return np.ones(len(log))


def arm_value(log: ExperimentLog, costs: Mapping[str, float]) -> pd.DataFrame:
    """Per treatment arm: revenue protected and cancellations avoided, cost, net value.

    Columns ``arm``, ``orders``, ``value_at_risk``, ``protected``, ``protected_ci_lower``,
    ``protected_ci_upper``, ``avoided``, ``cost``, ``net_value``, ``net_ci_lower``,
    ``net_ci_upper`` (totals over the arm's orders in the week, normal 95% intervals).
    """
    revenue = ratio_stats(log.frame, "revenue", _scale(log))
    retained = ratio_stats(log.frame, "retained", np.ones(len(log)))
    c_ratio, c_var = revenue.loc[log.control, ["ratio", "var"]].to_numpy(float)
    arms = revenue.drop(index=log.control)
    protected = arms["scale"] * (arms["ratio"] - c_ratio)
    se = arms["scale"] * np.sqrt(arms["var"] + c_var)
    cost = arms["orders"] * [costs.get(str(a), 0.0) for a in arms.index]
    rate = retained["ratio"]
    avoided = arms["orders"] * (rate.drop(index=log.control) - float(rate[log.control]))
    table = pd.DataFrame(
        {
            "orders": arms["orders"],
            "value_at_risk": arms["scale"],
            "protected": protected,
            "protected_ci_lower": protected - Z95 * se,
            "protected_ci_upper": protected + Z95 * se,
            "avoided": avoided,
            "cost": cost,
            "net_value": protected - cost,
            "net_ci_lower": protected - cost - Z95 * se,
            "net_ci_upper": protected - cost + Z95 * se,
        }
    )
    return table.rename_axis("arm").reset_index()


def headline(log: ExperimentLog, costs: Mapping[str, float]) -> Headline:
    """Retained revenue protected and cancellations avoided by the week's treated orders.

    Revenue protected is, per treatment arm, (arm's retained share of order value - the
    control's) x the arm's order value at risk: a ratio estimator, which takes the spread of
    order values out of the comparison (without ``order_value``, revenue per order x orders).
    Cancellations avoided are (arm's retention - control's) x the arm's orders. Intervals are
    normal 95%; the arms were randomised against the holdout, with the logged propensities.
    """
    protected, p_se = _protected(ratio_stats(log.frame, "revenue", _scale(log)), log.control)
    retained = ratio_stats(log.frame, "retained", np.ones(len(log)))
    avoided, a_se = _protected(retained, log.control)
    treated = retained.drop(index=log.control)["orders"]
    cost = float(sum(n * costs.get(str(arm), 0.0) for arm, n in treated.items()))
    n_treated = int(treated.sum())
    return _headline(
        len(log), n_treated, len(log) - n_treated, (protected, p_se), (avoided, a_se), cost
    )


def policy_headline(readout: PolicyReadout, orders: int) -> Headline:
    """The headline of a week the policy decided: its acted orders against its holdout.

    Revenue protected is before costs (the policy readout's net value plus the acted orders'
    cost, which is known, so the interval is the net value's shifted); cancellations avoided
    are the arms' retention differences times their acted orders.
    """
    total = readout.total
    return _headline(
        orders,
        int(total["acted"]),
        int(total["held"]),
        (total["revenue_protected"], total["protected_se"]),
        (total["orders_saved"], total["orders_saved_se"]),
        total["cost"],
    )


def _headline(
    orders: int,
    treated: int,
    held: int,
    protected: tuple[float, float],
    avoided: tuple[float, float],
    cost: float,
) -> Headline:
    """A headline from its totals and their standard errors (``(value, se)`` pairs)."""
    (revenue, revenue_se), (saved, saved_se) = protected, avoided
    low, high = revenue - Z95 * revenue_se, revenue + Z95 * revenue_se
    return_low, return_high = ratio_interval(low, high, cost)
    return Headline(
        orders=orders,
        treated_orders=treated,
        holdout_orders=held,
        retained_revenue_protected=revenue,
        protected_ci_lower=low,
        protected_ci_upper=high,
        cancellations_avoided=saved,
        avoided_ci_lower=saved - Z95 * saved_se,
        avoided_ci_upper=saved + Z95 * saved_se,
        cost=cost,
        return_per_cost=revenue / cost if cost > 0 else float("nan"),
        return_ci_lower=return_low,
        return_ci_upper=return_high,
    )


def ratio_interval(lower: float, upper: float, cost: float) -> tuple[float, float]:
    """95% interval of protected revenue per unit spent, from the protected revenue's interval.

    The cost is the treated orders times the price of one use: known exactly, not estimated.
    With a denominator free of noise the delta method and Fieller's interval both reduce to
    the numerator's interval divided by the cost (NaN when nothing was spent).
    """
    if not cost > 0:
        return float("nan"), float("nan")
    return lower / cost, upper / cost


def learn_threshold(arms: int, alpha: float = LEARN_ALPHA) -> float:
    """Two-sided normal quantile that keeps the chance of any false flag across arms at alpha."""
    return NormalDist().inv_cdf(1 - alpha / (2 * max(arms, 1)))


def learn_check(
    log: ExperimentLog,
    predicted: pd.DataFrame,
    *,
    model_id: str,
    trained_through: str,
    train_orders: int,
    buckets: int = 10,
    decisions: pd.DataFrame | None = None,
) -> LearnCheck:
    """Compare a model's predicted retained uplift with what the week's holdout measured.

    ``predicted`` holds the retained uplift per order and treatment arm (a column per arm),
    indexed like ``log.frame``. Per arm, the measured uplift is the weighted difference in
    means between the arm's and the control's orders; ``predicted`` its weighted mean over the
    same orders. With ``decisions`` (``policy_arm`` and ``holdout`` per order, aligned with
    ``log.frame``; missing where the policy did not decide), the arms the policy intended are
    checked on exactly the orders it intended them for: those that got the arm against those
    held out, both random parts of the same orders (unweighted). An arm with fewer than
    ``MIN_LEARN_GROUP`` orders in either group is not checked.
    The model's mean prediction is itself an estimate from ``train_orders`` orders, about as
    noisy as the same difference measured on them: with the arms in the same shares, its
    variance is ``se^2 * len(log) / train_orders``, added to the measured one. An arm is
    flagged when ``|z|`` passes the Bonferroni threshold over arms.
    """
    frame = log.frame
    arm_rows, decile_rows = [], []
    for arm in log.treatment_arms:
        rows, treated, weights = _learn_groups(log, arm, decisions)
        if min(treated[rows].sum(), (~treated[rows]).sum()) < MIN_LEARN_GROUP:
            continue
        args = (
            predicted[arm].to_numpy(float)[rows],
            frame["retained"].to_numpy(float)[rows],
            treated[rows],
        )
        overall = calibration_by_bucket(*args, buckets=1, weights=weights[rows]).table
        deciles = calibration_by_bucket(*args, buckets=buckets, weights=weights[rows]).table
        arm_rows.append(overall.assign(arm=arm))
        decile_rows.append(deciles.assign(arm=arm))
    if not arm_rows:
        raise SchemaError(f"{log.source}: no arm has orders both given it and kept on control")
    by_arm = pd.concat(arm_rows, ignore_index=True)
    se_total = by_arm["se"] * np.sqrt(1 + len(log) / max(train_orders, 1))
    by_arm["z"] = (by_arm["measured"] - by_arm["predicted"]) / se_total
    threshold = learn_threshold(len(by_arm))
    by_arm["flagged"] = by_arm["z"].abs() > threshold
    columns = ["arm", "n_treated", "n_control", "predicted", "measured", "se", "ci_lower"]
    by_decile = pd.concat(decile_rows, ignore_index=True)
    return LearnCheck(
        model_id=model_id,
        trained_through=trained_through,
        by_arm=by_arm[[*columns, "ci_upper", "z", "flagged"]],
        by_decile=by_decile[
            ["arm", "bucket", "predicted", "measured", "se", "ci_lower", "ci_upper", "covers"]
        ],
        threshold_z=threshold,
        flagged=bool(by_arm["flagged"].any()),
    )


def _learn_groups(
    log: ExperimentLog, arm: str, decisions: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows compared for ``arm``, which of them got it, and their weights."""
    frame = log.frame
    given = (frame["arm"] == arm).to_numpy()
    if decisions is None or not (decisions["policy_arm"] == arm).any():
        rows = given | (frame["arm"] == log.control).to_numpy()
        return rows, given, 1.0 / frame["propensity"].to_numpy(float)
    wanted = (decisions["policy_arm"] == arm).fillna(False).to_numpy(bool)
    held = decisions["holdout"].fillna(False).to_numpy(bool)
    acted = wanted & ~held & given
    return acted | (wanted & held), acted, np.ones(len(frame))


def qini_points(log: ExperimentLog, predicted: pd.DataFrame, points: int = 50) -> pd.DataFrame:
    """Qini curve of every arm's predicted uplift on the week's log, thinned to ``points``."""
    frame = log.frame
    weights = 1.0 / frame["propensity"].to_numpy(float)
    curves = []
    for arm in log.treatment_arms:
        rows = frame["arm"].isin([arm, log.control]).to_numpy()
        curve = qini_curve(
            predicted[arm].to_numpy(float)[rows],
            frame["retained"].to_numpy(float)[rows],
            (frame["arm"] == arm).to_numpy()[rows],
            weights[rows],
        )
        keep = np.unique(np.linspace(0, len(curve) - 1, points).round().astype(int))
        curves.append(curve.iloc[keep][["share", "value"]].assign(arm=arm))
    return pd.concat(curves, ignore_index=True)[["arm", "share", "value"]]


def base_rates(rates: pd.DataFrame) -> pd.DataFrame:
    """Weekly cancellation rates (``week``, ``orders``, ``cancel_rate``) with 95% intervals."""
    rate, n = rates["cancel_rate"].astype(float), rates["orders"].astype(float)
    se = np.sqrt(rate * (1 - rate) / n)
    return rates.assign(ci_lower=rate - Z95 * se, ci_upper=rate + Z95 * se)


def mix_shift(
    previous: pd.DataFrame, current: pd.DataFrame, features: Sequence[str]
) -> pd.DataFrame:
    """How the order mix moved between two weeks, largest standardised change first.

    Text features give one row per level (``previous`` and ``current`` shares), numeric ones
    one row (means). ``change`` is the standardised mean difference, comparable across both;
    ``shifted`` marks ``|change| > MIX_SHIFT``.
    """
    rows = []
    for name in features:
        if name not in previous.columns or name not in current.columns:
            continue
        if pd.api.types.is_numeric_dtype(current[name]) and not pd.api.types.is_bool_dtype(
            current[name]
        ):
            a, b = previous[name].astype(float), current[name].astype(float)
            pooled = np.sqrt((a.var() + b.var()) / 2)
            rows.append((name, "mean", a.mean(), b.mean(), (b.mean() - a.mean()) / pooled))
            continue
        p = previous[name].astype(str).value_counts(normalize=True)
        c = current[name].astype(str).value_counts(normalize=True)
        levels = p.index.union(c.index)
        p, c = p.reindex(levels, fill_value=0.0), c.reindex(levels, fill_value=0.0)
        mid = (p + c) / 2
        smd: pd.Series = (c - p) / np.sqrt((mid * (1 - mid)).clip(lower=1e-12))
        rows += [(name, str(lv), p[lv], c[lv], smd[lv]) for lv in levels]
    table = pd.DataFrame(rows, columns=["feature", "level", "previous", "current", "change"])
    table["shifted"] = table["change"].abs() > MIX_SHIFT
    order = table["change"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order].reset_index(drop=True)
