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
from uplift.experiment.holdout import PolicyReadout, read_out_policy
from uplift.experiment.metrics import Z95, calibration_by_bucket, qini_curve
from uplift.experiment.weighted import estimates, sufficient_statistics
from uplift.reports.results import Headline, LearnCheck, RiskSources

__all__ = [
    "arm_value",
    "base_rates",
    "cause_effects",
    "cause_shares",
    "headline",
    "learn_check",
    "mix_shift",
    "policy_headline",
    "qini_points",
    "ratio_interval",
    "risk_sources",
]

#: Family-wise error rate of the learn check across arms (Bonferroni).
LEARN_ALPHA = 0.05
#: Fewest orders in either group for an arm to be checked: below it the normal interval of a
#: difference of rates is not to be trusted (two held-out orders, both kept, have no spread).
MIN_LEARN_GROUP = 30
#: A standardised mean difference above this is a visible shift of the order mix.
MIX_SHIFT = 0.1
#: Fewest orders in either group (acted and held out, or treated and control) for the arms'
#: effect among a cause's orders to be shown: the interval of a smaller cause is too wide to act
#: on, and it is read from no more than a tenth of its orders (the holdout).
MIN_CAUSE_GROUP = 100


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


def risk_sources(
    log: ExperimentLog,
    risk: pd.DataFrame,
    last: pd.DataFrame | None = None,
    *,
    model_id: str,
    model_note: str = "",
    last_week: str = "",
    decisions: pd.DataFrame | None = None,
    costs: Mapping[str, float] | None = None,
    calibration: pd.DataFrame | None = None,
    ece: float = float("nan"),
    method: str = "",
) -> RiskSources:
    """Where the week's cancellation risk comes from, by cause (see :class:`RiskSources`).

    ``risk`` holds ``risk`` and ``cause`` of every order of ``log.frame`` (its index), as a
    risk model predicts them; ``last`` the same with ``order_value`` for last week's orders,
    scored by the same model (so a change of shares is a change of the orders, not of the
    model). ``decisions`` (``policy_arm``, ``holdout``, aligned with ``log.frame``) make the
    arms' effect per cause the policy's against its holdout; without them it is any treatment
    against control. ``calibration`` and ``ece`` are the risk model's own (its card's).
    """
    frame = log.frame
    has_last = last is not None and len(last) > 0
    table = cause_shares(risk.assign(order_value=frame["order_value"].to_numpy(float)), last)
    cancelled = 1.0 - frame["retained"].to_numpy(float)
    idle = (frame["arm"] == log.control).to_numpy()
    n = int(idle.sum())
    observed = float(cancelled[idle].mean()) if n else float("nan")
    observed_se = float(np.sqrt(observed * (1 - observed) / n)) if n else float("nan")
    return RiskSources(
        model_id=model_id,
        model_note=model_note,
        last_week=last_week if has_last else "",
        at_risk=float(table["at_risk"].sum()),
        last_at_risk=float(table["last_at_risk"].sum()) if has_last else float("nan"),
        mean_risk=float(risk["risk"].mean()),
        causes=table,
        # Bonferroni over the causes compared: the caption picks the largest of them.
        threshold_z=learn_threshold(int(table["share_change_z"].notna().sum())),
        basis="randomised" if decisions is None else "policy",
        min_group=MIN_CAUSE_GROUP,
        effects=_in_order(cause_effects(log, risk["cause"], decisions, costs or {}), table),
        calibration=(
            calibration.reset_index(drop=True) if calibration is not None else pd.DataFrame()
        ),
        ece=float(ece),
        method=method,
        check_orders=n,
        check_predicted=float(risk["risk"].to_numpy(float)[idle].mean()) if n else float("nan"),
        check_observed=observed,
        check_ci_lower=observed - Z95 * observed_se,
        check_ci_upper=observed + Z95 * observed_se,
    )


def _in_order(effects: pd.DataFrame, causes: pd.DataFrame) -> pd.DataFrame:
    """The effects' rows in the causes table's order (largest revenue at risk first)."""
    rank = {cause: k for k, cause in enumerate(causes["cause"])}
    order = effects["cause"].map(rank).fillna(len(rank))
    return effects.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def cause_shares(this: pd.DataFrame, last: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cause, this week's orders and revenue at risk against last week's (the ``causes``
    of :class:`RiskSources`); ``this`` and ``last`` hold ``order_value``, ``risk`` and
    ``cause`` per order."""
    now = _cause_shares(this["order_value"].to_numpy(float), this)
    if last is not None and len(last):
        before = _cause_shares(last["order_value"].to_numpy(float), last)
    else:
        before = pd.DataFrame(np.nan, index=now.index, columns=now.columns)
    table = now.join(before.add_prefix("last_"), how="outer")
    counts = table[["orders", "last_orders"]].fillna(0.0)
    table = table[(counts > 0).any(axis=1)]
    change = table["at_risk_share"] - table["last_at_risk_share"]
    # The weeks' orders are independent draws, so the two shares' variances add.
    se = (table["share_se"] ** 2 + table["last_share_se"] ** 2).pow(0.5)
    table = table.assign(
        share_change=change,
        share_change_se=se,
        share_change_ci_lower=change - Z95 * se,
        share_change_ci_upper=change + Z95 * se,
        share_change_z=change / se.where(se > 0),
        at_risk_change=table["at_risk"] - table["last_at_risk"],
    )
    table = table.drop(columns=["share_se", "last_share_se"])
    table = table.sort_values("at_risk", ascending=False, kind="stable")
    table = table.rename_axis("cause").reset_index()
    table["cause"] = table["cause"].astype(str)
    return table


def _cause_shares(value: np.ndarray, risk: pd.DataFrame) -> pd.DataFrame:
    """Per cause: orders, their share, mean risk, revenue at risk and its share with the
    share's standard error.

    The share is a ratio, sum over the cause's orders of value x risk over the sum over all
    orders. Its standard error is the ratio's linearised one, with the orders as independent
    draws (a multinomial draw of causes, each order weighted by its revenue at risk): the
    risk model is fixed, so the orders drawn are the only noise.
    """
    at_risk = value * risk["risk"].to_numpy(float)
    total, n = at_risk.sum(), len(at_risk)
    cause = pd.Series(pd.Categorical(risk["cause"]), index=risk.index)
    rows = {}
    for level in cause.cat.categories:
        mine = (cause == level).to_numpy()
        share = at_risk[mine].sum() / total
        residual = at_risk * (mine - share)
        rows[str(level)] = {
            "orders": float(mine.sum()),
            "order_share": mine.mean(),
            "mean_risk": float(risk["risk"].to_numpy(float)[mine].mean()) if mine.any() else np.nan,
            "at_risk": float(at_risk[mine].sum()),
            "at_risk_share": share,
            "share_se": np.sqrt(n / max(n - 1, 1) * (residual**2).sum()) / total,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def cause_effects(
    log: ExperimentLog,
    cause: pd.Series,
    decisions: pd.DataFrame | None,
    costs: Mapping[str, float],
) -> pd.DataFrame:
    """Per cause, what the arms given to its orders did (columns of ``RiskSources.effects``).

    A cause is a function of the order's inputs, fixed before its arm was drawn, so within a
    cause the policy's acted and held-out orders (or the treated and control orders of a
    randomised week) are still random parts of the same orders.
    """
    frame = log.frame
    labels = pd.Series(pd.Categorical(cause)).set_axis(frame.index)
    joined = None
    if decisions is not None:
        joined = pd.concat([frame, decisions.set_axis(frame.index)], axis=1)
    rows = []
    for level in labels.cat.categories:
        mine = (labels == level).to_numpy()
        if not mine.any():
            continue
        if joined is not None:
            row = _policy_effect(joined[mine], log.control, costs)
        else:
            row = _randomised_effect(log.subset(mine), costs)
        measured = min(row["acted"], row["held"]) >= MIN_CAUSE_GROUP and np.isfinite(row["uplift"])
        if not measured:
            row |= dict.fromkeys(_EFFECT_FIGURES, np.nan)
        rows.append(
            {"cause": str(level), **row, "measured": measured}
            | {"note": "" if measured else "too few orders"}
        )
    columns = ["cause", "acted", "held", *_EFFECT_FIGURES, "measured", "note"]
    return pd.DataFrame(rows, columns=columns)


_EFFECT_FIGURES = (
    "uplift",
    "uplift_ci_lower",
    "uplift_ci_upper",
    "orders_saved",
    "protected",
    "protected_ci_lower",
    "protected_ci_upper",
)


def _effect_row(
    acted: float, held: float, saved: tuple[float, float], protected: tuple[float, float]
) -> dict[str, float]:
    """A cause's row from its totals and their standard errors: orders saved (per acted
    order, the uplift) and net value protected."""
    (orders, orders_se), (net, net_se) = saved, protected
    per = 1.0 / acted if acted > 0 else np.nan
    return {
        "acted": acted,
        "held": held,
        "uplift": orders * per,
        "uplift_ci_lower": (orders - Z95 * orders_se) * per,
        "uplift_ci_upper": (orders + Z95 * orders_se) * per,
        "orders_saved": orders,
        "protected": net,
        "protected_ci_lower": net - Z95 * net_se,
        "protected_ci_upper": net + Z95 * net_se,
    }


def _policy_effect(
    frame: pd.DataFrame, control: str, costs: Mapping[str, float]
) -> dict[str, float]:
    """The policy's acted orders of a cause against its held-out ones (every arm measured)."""
    readout = read_out_policy(frame, control=control, costs=costs)
    total = readout.total
    if readout.by_arm.empty:
        # No arm has enough orders in both groups among this cause's: count what there is.
        small = readout.unmeasured
        return _effect_row(
            float(small["acted"].sum()), float(small["held"].sum()), (np.nan, 0), (np.nan, 0)
        )
    return _effect_row(
        total["acted"],
        total["held"],
        (total["orders_saved"], total["orders_saved_se"]),
        (total["protected"], total["protected_se"]),
    )


def _randomised_effect(log: ExperimentLog, costs: Mapping[str, float]) -> dict[str, float]:
    """Any treatment against control among a cause's orders: the headline's figures."""
    frame = log.frame
    held = float((frame["arm"] == log.control).sum())
    acted = float(len(frame) - held)
    if min(acted, held) < MIN_CAUSE_GROUP:
        return _effect_row(acted, held, (np.nan, 0), (np.nan, 0))
    h = headline(log, costs)
    saved_se = (h.avoided_ci_upper - h.avoided_ci_lower) / (2 * Z95)
    protected_se = (h.protected_ci_upper - h.protected_ci_lower) / (2 * Z95)
    # The cost of the treated orders is known: the net value's interval is the revenue's,
    # shifted.
    return _effect_row(
        acted,
        held,
        (h.cancellations_avoided, saved_se),
        (h.retained_revenue_protected - h.cost, protected_se),
    )
