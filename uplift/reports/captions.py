"""The sentence under each chart: what moved, and whether it is more than noise.

Pure functions of the report's tables; "beyond noise" means the 95% interval (or a test at
5%) excludes no change, so a reader can tell a real move from a wobble without the figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from uplift.experiment.metrics import Z95
from uplift.reports.builder import MIN_SHADOW_PRICE
from uplift.reports.formats import count, is_number, money, percent, span
from uplift.reports.results import DEFAULT_WORDS, OutcomeWords, RiskSources

__all__ = [
    "ALPHA",
    "arm_caption",
    "calibration_caption",
    "capacity_caption",
    "drift_caption",
    "loop_caption",
    "policy_value_caption",
    "qini_caption",
    "risk_calibration_caption",
    "risk_effect_caption",
    "risk_source_caption",
    "segment_caption",
    "truth_caption",
]

#: The level of every test a caption reports (intervals are 95%).
ALPHA = 0.05
#: The policy that treats no order (``uplift.models.contest.TREAT_NONE``; importing that module
#: would load the learners, seconds for a page that only reads tables).
TREAT_NONE = "treat_none"


def _names(names: list[str]) -> str:
    """Names joined for a sentence: "a", "a and b", "a, b and c"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _largest(rows: pd.DataFrame, values: pd.Series) -> pd.Series:
    """The row of ``rows`` with the largest of ``values`` (aligned with it)."""
    return rows.iloc[int(np.argmax(values.to_numpy(float)))]


def arm_caption(arms: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> str:
    """Under the arm effects: the largest move, and which arms moved beyond noise."""
    rows = arms.dropna(subset=["uplift"])
    if rows.empty:
        return "No treatment arm was measured this week."
    top = _largest(rows, rows["uplift"].abs())
    moved = (
        f"{top['arm']} moved the {words.kept} share most: "
        f"{span(percent(top['uplift']), percent(top['ci_lower']), percent(top['ci_upper']))}."
    )
    real = rows[rows["p_value"] < ALPHA]
    if real.empty:
        return f"{moved} No arm's change is beyond noise (adjusted p ≥ {ALPHA} for every arm)."
    up = list(real.loc[real["uplift"] > 0, "arm"].astype(str))
    down = list(real.loc[real["uplift"] < 0, "arm"].astype(str))
    parts = [f"{_names(up)} raise{'s' * (len(up) == 1)} it" if up else ""]
    parts.append(f"{_names(down)} lower{'s' * (len(down) == 1)} it" if down else "")
    said = f"{moved} {' and '.join(p for p in parts if p)} beyond noise (adjusted p < {ALPHA})"
    if len(real) < len(rows):
        return f"{said}; the other arms' changes are within noise."
    return f"{said}."


def calibration_caption(by_arm: pd.DataFrame, threshold: float) -> str:
    """Under the calibration chart: the arm whose prediction missed most, and whether it
    missed by more than noise (``|z|`` past the Bonferroni bar ``threshold``)."""
    rows = by_arm.dropna(subset=["z"])
    if rows.empty:
        return "No arm could be checked against its prediction."
    worst = _largest(rows, rows["z"].abs())
    gap = (
        f"The largest gap between prediction and measurement is {worst['arm']}'s: "
        f"{percent(worst['predicted'])} predicted, {percent(worst['measured'])} measured "
        f"(z = {worst['z']:.2f})"
    )
    if abs(worst["z"]) > threshold:
        return f"{gap}, beyond noise (the bar is |z| = {threshold:.2f}): the model has drifted."
    return f"{gap}, within noise (the bar is |z| = {threshold:.2f})."


def qini_caption(summary: pd.DataFrame) -> str:
    """Under the Qini curves: for which arms the model's ranking beats a random one, beyond
    noise when the summary has the Qini's interval (``qini_ci_lower``, ``qini_ci_upper``)."""
    if summary.empty or "qini_coefficient" not in summary.columns:
        return "No Qini figures this week."
    rows = summary.dropna(subset=["qini_coefficient"])
    if rows.empty:
        return "No Qini figures this week."
    if {"qini_ci_lower", "qini_ci_upper"} <= set(rows.columns):
        return _qini_beyond_noise(rows)
    best = _largest(rows, rows["qini_coefficient"])
    flat = list(rows.loc[rows["qini_coefficient"] <= 0, "arm"].astype(str))
    caveat = " The Qini has no interval here, so small differences may be noise."
    if best["qini_coefficient"] <= 0:
        return "The model's ranking does no better than a random one for any arm." + caveat
    said = (
        f"Ranking orders by the model beats a random ranking most for {best['arm']} "
        f"(Qini {percent(best['qini_coefficient'])})"
    )
    if flat:
        said += f"; for {_names(flat)} it does no better than random"
    return said + "." + caveat


def _qini_beyond_noise(rows: pd.DataFrame) -> str:
    """The Qini caption with 95% intervals: which arms' rankings beat or lose to a random one
    by more than noise."""
    better = rows[rows["qini_ci_lower"] > 0]
    worse = list(rows.loc[rows["qini_ci_upper"] < 0, "arm"].astype(str))
    noise = list(rows.loc[(rows["qini_ci_lower"] <= 0) & (rows["qini_ci_upper"] >= 0), "arm"])
    if better.empty:
        parts = [
            "For no arm does the model's ranking beat a random one beyond noise (95% "
            "bootstrap intervals of the Qini)"
        ]
    else:
        best = _largest(better, better["qini_coefficient"])
        figure = (
            f"Qini {percent(best['qini_coefficient'])}, 95% bootstrap interval "
            f"{percent(best['qini_ci_lower'])} to {percent(best['qini_ci_upper'])}"
        )
        arms = list(better["arm"].astype(str))
        which = figure if len(arms) == 1 else f"most for {best['arm']}: {figure}"
        parts = [
            f"Ranking orders by the model beats a random ranking beyond noise for "
            f"{_names(arms)} ({which})"
        ]
        if noise:
            parts.append(f"for {_names([str(a) for a in noise])} it is within noise of random")
    if worse:
        parts.append(f"for {_names(worse)} it does worse than random beyond noise")
    return "; ".join(parts) + "."


def policy_value_caption(values: pd.DataFrame, currency: str = "") -> str:
    """Under the policy values: the best policy against treating no one."""
    rows = values.dropna(subset=["value"])
    rows = rows[rows["policy"] != TREAT_NONE]
    if rows.empty:
        return "No policy was valued this week."
    best = _largest(rows, rows["value"])
    said = f"The best policy, {best['policy']}, earns {money(best['value'], currency, 2)} per order"
    if not all(is_number(best.get(c)) for c in ("diff", "diff_ci_lower", "diff_ci_upper")):
        return f"{said}."
    diff, lower, upper = (float(best[c]) for c in ("diff", "diff_ci_lower", "diff_ci_upper"))
    side = "more" if diff >= 0 else "less"
    bounds = f"{money(lower, currency, 2)} to {money(upper, currency, 2)}"
    said += f", {money(abs(diff), currency, 2)} {side} than treating no one ({bounds})"
    if lower > 0:
        return f"{said}: beyond noise."
    if upper < 0:
        return f"{said}: a loss beyond noise."
    return f"{said}: within noise, so it is not shown to beat treating no one."


def capacity_caption(capacity: pd.DataFrame, currency: str = "") -> str:
    """Under the capacity chart: which limits bind and what one more use would earn."""
    binding = capacity[capacity["shadow_price"] > MIN_SHADOW_PRICE]
    if binding.empty:
        return "No arm's limit binds this week: one more use of any arm would earn nothing more."
    said = [
        f"{row.arm}'s limit binds ({count(row.used)} of {count(row.capacity)} uses taken; "
        f"one more would earn about {money(row.shadow_price, currency, 2)} net)"
        for row in binding.itertuples()
    ]
    return "; ".join(said) + "."


def _rate_se(rate: float, orders: float) -> float:
    return math.sqrt(rate * (1 - rate) / orders) if orders > 0 else math.nan


def drift_caption(base_rates: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> str:
    """Under the drift chart: how the control arm's rate moved from the first week to the last.

    The noise it is held against is the larger of the two weeks' sampling noise (binomial)
    and the spread of the week-to-week changes: weeks wobble more than sampling explains
    (promotions, seasons), and were each week a fresh draw around a steady rate, first to last
    would vary as much as one week to the next.
    """
    rows = base_rates.dropna(subset=["cancel_rate"])
    if len(rows) < 2:
        return f"Only one week so far: there is no earlier {words.rate} to compare with."
    rates = rows["cancel_rate"].to_numpy(float)
    a, b = rates[0], rates[-1]
    first, last = rows.iloc[0], rows.iloc[-1]
    noise = math.hypot(_rate_se(a, float(first["orders"])), _rate_se(b, float(last["orders"])))
    if len(rates) > 2:
        noise = max(noise, float(np.std(np.diff(rates), ddof=1)))
    moved = f"from {percent(a, 1)} to {percent(b, 1)}"
    moved = f"rose {moved}" if b > a else f"fell {moved}" if b < a else f"stayed at {percent(a, 1)}"
    said = f"The {words.rate} {moved} over {len(rows)} weeks"
    if not noise > 0:
        return f"{said}."
    z = (b - a) / noise
    verdict = "larger than" if abs(z) > Z95 else "within"
    return f"{said}; the change is {verdict} week-to-week noise (z = {z:.2f})."


def loop_caption(loop: pd.DataFrame, currency: str = "") -> str:
    """Under the loop chart: the running total so far and whether it is beyond noise."""
    decided = loop[loop["protected"].notna()]
    if decided.empty:
        return "No week of the loop has been decided by the policy yet."
    last = loop.iloc[-1]
    total, lower, upper = (
        float(last[c]) for c in ("cumulative", "cumulative_ci_lower", "cumulative_ci_upper")
    )
    predicted = float(np.nansum(decided["predicted"]))
    said = (
        f"Over {len(decided)} week{'s' * (len(decided) > 1)} decided by the policy it protected "
        f"{span(money(total, currency), money(lower, currency), money(upper, currency))} net "
        f"against its holdout, where the model predicted {money(predicted, currency)}"
    )
    if lower > 0:
        return f"{said}: a gain beyond noise."
    if upper < 0:
        return f"{said}: a loss beyond noise."
    return f"{said}: within noise, not yet shown to earn more than no action."


def truth_caption(loop: pd.DataFrame, currency: str = "") -> str:
    """Under the truth chart (a simulation): the decisions' true worth against the oracle's."""
    if not {"true_value", "oracle_value"} <= set(loop.columns):
        return "The simulation's truth covers no week yet."
    rows = loop.dropna(subset=["true_value", "oracle_value"])
    if rows.empty:
        return "The simulation's truth covers no week yet."
    true, oracle = float(rows["true_value"].sum()), float(rows["oracle_value"].sum())
    said = (
        f"Over {len(rows)} week{'s' * (len(rows) > 1)} the decisions were truly worth "
        f"{money(true, currency)} net against the oracle's {money(oracle, currency)}"
    )
    if true > 0 and oracle > 0:
        return f"{said}: {percent(true / oracle, 0)} of what the same capacities could earn."
    return f"{said}: the decisions earned nothing of what the same capacities could."


def segment_caption(segments: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> str:
    """Above the segment table: how many comparisons were tested, the correction, the finds."""
    if segments.empty or segments["p_value"].isna().all():
        return "No segment was tested this week."
    tested = segments.dropna(subset=["p_value"])
    columns = list(dict.fromkeys(tested["segment"].astype(str)))
    said = (
        f"{len(tested)} segment comparisons tested (each level of {_names(columns)} against "
        "control, per arm)"
    )
    if "p_raw" not in tested.columns:
        return f"{said}."  # a report written before the correction over all segments
    said += (
        f"; p-values adjusted by Holm across all {len(tested)}, so reading many rows does not "
        "manufacture findings."
    )
    found = tested[tested["p_value"] < ALPHA]
    if found.empty:
        return f"{said} None moves the {words.kept} share beyond noise after adjustment."
    finds = [
        f"{row.arm} for {row.segment} = {row.level} ({percent(row.uplift)})"
        for row in found.itertuples()
    ]
    return f"{said} Beyond noise after adjustment: {_names(finds)}."


def _points(change: float) -> str:
    """A change of a share in percentage points: "+3.4 points"."""
    return f"{100 * change:+.1f} points"


def risk_source_caption(risk: RiskSources, currency: str = "") -> str:
    """Under the causes chart: where most revenue at risk comes from, and the cause whose share
    grew most since last week, beyond week-to-week noise or not.

    Noise is the sampling noise of both weeks' orders (one model scores both, so the orders
    drawn are the only noise), held against a Bonferroni bar over the causes: the caption
    picks the largest of them.
    """
    causes = risk.causes.dropna(subset=["at_risk"])
    if causes.empty:
        return "No order of this week has a predicted risk."
    top = causes.iloc[0]
    said = (
        f"{money(risk.at_risk, currency)} of this week's revenue is at risk (mean risk "
        f"{percent(risk.mean_risk, 1)}); most of it comes from {top['cause']}: "
        f"{percent(top['at_risk_share'], 1)} of it, from {percent(top['order_share'], 1)} of "
        "orders."
    )
    rows = causes.dropna(subset=["share_change", "share_change_z"])
    if not risk.last_week or rows.empty:
        return f"{said} There is no earlier week to compare with."
    grew = _largest(rows, rows["share_change"].astype(float))
    change, z = float(grew["share_change"]), float(grew["share_change_z"])
    if change <= 0:
        return f"{said} No cause's share of revenue at risk grew since {risk.last_week}."
    moved = (
        f"Since {risk.last_week}, {grew['cause']}'s share grew most: from "
        f"{percent(grew['last_at_risk_share'], 1)} to {percent(grew['at_risk_share'], 1)} "
        f"({_points(change)}, z = {z:.2f})"
    )
    bar = (
        f"the bar is z = {risk.threshold_z:.2f}: the sampling noise of both weeks' orders, "
        f"over {len(rows)} causes"
    )
    verdict = "beyond" if z > risk.threshold_z else "within"
    return f"{said} {moved}, {verdict} week-to-week noise ({bar})."


def risk_effect_caption(
    risk: RiskSources, words: OutcomeWords = DEFAULT_WORDS, currency: str = ""
) -> str:
    """Above the table of effects by cause: how they were measured, and the cause among whose
    orders the arms kept most net value."""
    effects = risk.effects
    basis = (
        "the orders the policy gave an arm against the held-out orders it intended an arm for"
        if risk.basis == "policy"
        else "the orders given any arm against the control orders"
    )
    small = int((~effects["measured"].astype(bool)).sum()) if not effects.empty else 0
    few = (
        f" {small} cause{'s' * (small != 1)} with fewer than {risk.min_group} orders in a group "
        f"show{'s' * (small == 1)} too few orders."
        if small
        else ""
    )
    rows = effects[effects["measured"].astype(bool)] if not effects.empty else effects
    rows = rows.dropna(subset=["protected"])
    if rows.empty:
        return f"Per cause, {basis}: no cause has enough orders to measure.{few}"
    best = _largest(rows, rows["protected"].astype(float))
    net = span(
        money(best["protected"], currency),
        money(best["protected_ci_lower"], currency),
        money(best["protected_ci_upper"], currency),
    )
    figures = f"{net}, {words.kept} uplift {percent(best['uplift'], 1)}"
    if float(best["protected"]) > 0:
        noise = "beyond" if float(best["protected_ci_lower"]) > 0 else "within"
        said = (
            f"Per cause, {basis}. The arms kept most net value among {best['cause']}'s orders: "
            f"{figures}, {noise} noise."
        )
    else:
        said = (
            f"Per cause, {basis}. Among no cause's orders did the arms keep more than they "
            f"cost; the least lost was among {best['cause']}'s: {figures}."
        )
    losing = list(rows.loc[rows["protected_ci_upper"].astype(float) < 0, "cause"].astype(str))
    if losing:
        said += f" Among the orders of {_names(losing)} the arms lost net value beyond noise."
    return said + few


def risk_calibration_caption(risk: RiskSources, words: OutcomeWords = DEFAULT_WORDS) -> str:
    """Under the risk calibration chart: the risk model's calibration error on its own held-out
    orders, and this week's orders given no action against their predicted risk."""
    method = {"platt": " (Platt scaling)", "isotonic": " (isotonic regression)"}.get(
        risk.method, ""
    )
    said = (
        f"The risk model's reliability on its held-out calibration orders{method}: expected "
        f"calibration error {percent(risk.ece)} (the mean gap between predicted risk and the "
        f"{words.rate} of orders with that risk)."
        if is_number(risk.ece)
        else "The risk model's calibration curve is not known."
    )
    if not risk.check_orders or not is_number(risk.check_observed):
        return f"{said} No order of this week was left without action to check it on."
    observed = span(
        percent(risk.check_observed, 1),
        percent(risk.check_ci_lower, 1),
        percent(risk.check_ci_upper, 1),
    )
    week = (
        f"This week its mean predicted risk is {percent(risk.mean_risk, 1)}; the "
        f"{count(risk.check_orders)} orders given no action (holdout and control) were predicted "
        f"{percent(risk.check_predicted, 1)} and had a {words.rate} of {observed}"
    )
    if risk.check_ci_lower <= risk.check_predicted <= risk.check_ci_upper:
        return f"{said} {week}: within noise."
    side = "under" if risk.check_predicted < risk.check_ci_lower else "over"
    return f"{said} {week}: beyond noise, the risk is {side}-predicted this week."
