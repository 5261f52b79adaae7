"""The sentences under the charts and the number formats, on constructed tables: every branch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uplift.reports import captions, formats, tables
from uplift.reports.results import OutcomeWords, RiskSources

VISITS = OutcomeWords(
    kept="visited",
    keeps="brings back",
    lost="missed visits",
    avoided="visits gained",
    rate="no-visit rate",
)


def arms(uplift: list[float], p: list[float]) -> pd.DataFrame:
    """An arm table: control first (no uplift), then arms a, b, ... with intervals of +-1%."""
    up = np.array([np.nan, *uplift])
    return pd.DataFrame(
        {
            "arm": ["control", *"abcdef"[: len(uplift)]],
            "uplift": up,
            "ci_lower": up - 0.01,
            "ci_upper": up + 0.01,
            "p_value": [np.nan, *p],
        }
    )


def test_arm_caption_names_the_largest_move_and_the_arms_beyond_noise() -> None:
    assert captions.arm_caption(arms([], [])) == "No treatment arm was measured this week."
    quiet = captions.arm_caption(arms([0.004, -0.006], [0.6, 0.4]))
    assert quiet == (
        "b moved the retained share most: -0.60% (-1.60% to 0.40%). No arm's change is beyond "
        "noise (adjusted p ≥ 0.05 for every arm)."
    )
    one = captions.arm_caption(arms([0.03, 0.001], [0.001, 0.9]))
    assert one == (
        "a moved the retained share most: 3.00% (2.00% to 4.00%). a raises it beyond noise "
        "(adjusted p < 0.05); the other arms' changes are within noise."
    )
    both = captions.arm_caption(arms([0.03, -0.02, 0.025], [0.001, 0.01, 0.02]), VISITS)
    assert both.startswith("a moved the visited share most")
    assert both.endswith("a and c raise it and b lowers it beyond noise (adjusted p < 0.05).")


def test_calibration_caption_says_whether_the_worst_miss_is_noise() -> None:
    by_arm = pd.DataFrame(
        {"arm": ["a", "b"], "predicted": [0.01, 0.02], "measured": [0.012, 0.05], "z": [0.3, 2.1]}
    )
    assert captions.calibration_caption(by_arm, 2.58) == (
        "The largest gap between prediction and measurement is b's: 2.00% predicted, 5.00% "
        "measured (z = 2.10), within noise (the bar is |z| = 2.58)."
    )
    drifted = captions.calibration_caption(by_arm.assign(z=[0.3, -3.2]), 2.58)
    assert drifted.endswith(
        "(z = -3.20), beyond noise (the bar is |z| = 2.58): the model has drifted."
    )
    assert captions.calibration_caption(by_arm.iloc[:0], 2.58).startswith("No arm could be")


def test_qini_caption_separates_useful_rankings_from_random_ones() -> None:
    summary = pd.DataFrame({"arm": ["a", "b", "c"], "qini_coefficient": [0.004, -0.001, 0.0]})
    said = captions.qini_caption(summary)
    assert said.startswith(
        "Ranking orders by the model beats a random ranking most for a (Qini 0.40%); for b and c "
        "it does no better than random."
    )
    assert "no interval" in said
    assert "does no better" not in captions.qini_caption(summary.iloc[:1])
    assert captions.qini_caption(summary.iloc[1:]).startswith(
        "The model's ranking does no better than a random one for any arm."
    )
    assert captions.qini_caption(pd.DataFrame()) == "No Qini figures this week."


def test_qini_caption_with_intervals_says_which_arms_are_beyond_noise() -> None:
    summary = pd.DataFrame(
        {
            "arm": ["a", "b", "c", "d"],
            "qini_coefficient": [0.004, 0.006, 0.001, -0.003],
            "qini_ci_lower": [0.001, 0.002, -0.002, -0.005],
            "qini_ci_upper": [0.007, 0.010, 0.004, -0.001],
        }
    )
    assert captions.qini_caption(summary) == (
        "Ranking orders by the model beats a random ranking beyond noise for a and b (most for "
        "b: Qini 0.60%, 95% bootstrap interval 0.20% to 1.00%); for c it is within noise of "
        "random; for d it does worse than random beyond noise."
    )
    assert captions.qini_caption(summary.iloc[:1]) == (
        "Ranking orders by the model beats a random ranking beyond noise for a (Qini 0.40%, 95% "
        "bootstrap interval 0.10% to 0.70%)."
    )
    assert captions.qini_caption(summary.iloc[2:]) == (
        "For no arm does the model's ranking beat a random one beyond noise (95% bootstrap "
        "intervals of the Qini); for d it does worse than random beyond noise."
    )


def policy_values(diff: float, lower: float, upper: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "policy": ["champion", "treat_none"],
            "value": [80.0 + diff, 80.0],
            "diff": [diff, 0.0],
            "diff_ci_lower": [lower, 0.0],
            "diff_ci_upper": [upper, 0.0],
        }
    )


def test_policy_value_caption_against_treating_no_one() -> None:
    assert captions.policy_value_caption(policy_values(2.0, 0.5, 3.5), "EUR") == (
        "The best policy, champion, earns EUR 82.00 per order, EUR 2.00 more than treating no "
        "one (EUR 0.50 to EUR 3.50): beyond noise."
    )
    assert captions.policy_value_caption(policy_values(-2.0, -3.5, -0.5)).endswith(
        "2.00 less than treating no one (-3.50 to -0.50): a loss beyond noise."
    )
    assert captions.policy_value_caption(policy_values(1.0, -0.5, 2.5)).endswith(
        "within noise, so it is not shown to beat treating no one."
    )
    bare = policy_values(1.0, -0.5, 2.5).drop(columns=["diff", "diff_ci_lower", "diff_ci_upper"])
    assert (
        captions.policy_value_caption(bare) == "The best policy, champion, earns 81.00 per order."
    )
    only_none = policy_values(1.0, 0, 2).iloc[1:]
    assert captions.policy_value_caption(only_none) == "No policy was valued this week."


def test_capacity_caption_names_the_binding_limits() -> None:
    capacity = pd.DataFrame(
        {
            "arm": ["a", "b"],
            "capacity": [500.0, math.inf],
            "used": [500.0, 80.0],
            "shadow_price": [2.5, 0.0],
        }
    )
    assert captions.capacity_caption(capacity, "EUR") == (
        "a's limit binds (500 of 500 uses taken; one more would earn about EUR 2.50 net)."
    )
    assert captions.capacity_caption(capacity.iloc[1:]).startswith("No arm's limit binds")


def rates(values: list[float], orders: int = 10_000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "week": [f"2026-W{10 + k}" for k in range(len(values))],
            "orders": orders,
            "cancel_rate": values,
        }
    )


def test_drift_caption_holds_the_change_against_week_to_week_noise() -> None:
    # Binomial noise of 10,000 orders: 0.0025 at 6.7%, 0.0031 at 11%, 0.0040 for their
    # difference; a rise of 4.3 points is 10.7 of those.
    assert captions.drift_caption(rates([0.067, 0.11])) == (
        "The cancellation rate rose from 6.7% to 11.0% over 2 weeks; the change is larger than "
        "week-to-week noise (z = 10.74)."
    )
    # The weeks swing by 3.4 points (sd) from one to the next: a fall of 1 point is within that.
    wobbly = captions.drift_caption(rates([0.08, 0.05, 0.09, 0.06, 0.07]), VISITS)
    assert wobbly.startswith("The no-visit rate fell from 8.0% to 7.0% over 5 weeks")
    assert wobbly.endswith("the change is within week-to-week noise (z = -0.29).")
    assert captions.drift_caption(rates([0.05, 0.05])).startswith(
        "The cancellation rate stayed at 5.0% over 2 weeks; the change is within"
    )
    assert captions.drift_caption(rates([0.05])).startswith("Only one week so far")


def loop(protected: list[float], se: float) -> pd.DataFrame:
    values = np.array(protected)
    total = np.nancumsum(values)
    spread = 1.959964 * se * np.sqrt(np.arange(1, len(values) + 1))
    return pd.DataFrame(
        {
            "protected": values,
            "predicted": values * 2,
            "cumulative": total,
            "cumulative_ci_lower": total - spread,
            "cumulative_ci_upper": total + spread,
        }
    )


def test_loop_caption_says_whether_the_running_total_is_beyond_noise() -> None:
    gain = captions.loop_caption(loop([10_000, 12_000], se=2_000), "EUR")
    assert gain.startswith("Over 2 weeks decided by the policy it protected EUR 22,000 (EUR 16,456")
    assert gain.endswith("where the model predicted EUR 44,000: a gain beyond noise.")
    assert captions.loop_caption(loop([-10_000], se=2_000)).endswith("a loss beyond noise.")
    assert captions.loop_caption(loop([np.nan, 1_000], se=5_000)).startswith("Over 1 week ")
    assert captions.loop_caption(loop([1_000], se=5_000)).endswith(
        "within noise, not yet shown to earn more than no action."
    )
    assert captions.loop_caption(loop([np.nan], se=1.0)).startswith("No week of the loop")


def test_truth_caption_compares_the_decisions_with_the_oracle() -> None:
    truth = pd.DataFrame({"true_value": [10_000.0, 20_000.0], "oracle_value": [50_000.0, 50_000.0]})
    assert captions.truth_caption(truth) == (
        "Over 2 weeks the decisions were truly worth 30,000 net against the oracle's 100,000: "
        "30% of what the same capacities could earn."
    )
    assert captions.truth_caption(truth.assign(true_value=-1.0)).endswith(
        "the decisions earned nothing of what the same capacities could."
    )
    assert captions.truth_caption(truth.drop(columns="oracle_value")).startswith("The simulation")


def segments(p_raw: list[float], p_holm: list[float]) -> pd.DataFrame:
    n = len(p_raw)
    return pd.DataFrame(
        {
            "segment": ["device"] * (n - 1) + ["category"],
            "level": [f"l{k}" for k in range(n)],
            "arm": "a",
            "uplift": -0.05,
            "p_raw": p_raw,
            "p_value": p_holm,
        }
    )


def test_segment_caption_counts_the_tests_and_names_the_finds() -> None:
    none = captions.segment_caption(segments([0.02, 0.3, np.nan], [0.04, 0.3, np.nan]))
    assert none.startswith(
        "2 segment comparisons tested (each level of device against control, per arm); p-values "
        "adjusted by Holm across all 2"
    )
    found = captions.segment_caption(segments([0.001, 0.3, 0.02], [0.003, 0.3, 0.04]), VISITS)
    assert "3 segment comparisons tested (each level of device and category" in found
    assert found.endswith(
        "Beyond noise after adjustment: a for device = l0 (-5.00%) and a for category = l2 "
        "(-5.00%)."
    )
    none = captions.segment_caption(segments([0.02, 0.3], [0.06, 0.3]), VISITS)
    assert none.endswith("None moves the visited share beyond noise after adjustment.")
    old = segments([0.02, 0.3], [0.04, 0.3]).drop(columns="p_raw")
    assert "Holm" not in captions.segment_caption(old)
    assert captions.segment_caption(old.iloc[:0]) == "No segment was tested this week."


def test_formats_write_one_unit_per_measure() -> None:
    assert formats.money(1234.4) == "1,234"
    assert formats.money(-1234.4, "EUR") == "EUR -1,234"
    assert formats.money(2.5, "EUR", 2) == "EUR 2.50"
    assert formats.money(float("nan"), "EUR") == "–"
    assert formats.percent(0.0123) == "1.23%"
    assert formats.p_value(0.0004) == "<0.001"
    assert formats.p_value(0.04321) == "0.043"
    assert formats.span("1.20%", "0.80%", "1.60%") == "1.20% (0.80% to 1.60%)"
    assert formats.span("1.20%", "–", "1.60%") == "1.20%"


def test_a_table_cell_holds_its_estimate_and_interval() -> None:
    frame = pd.DataFrame(
        {
            "arm": ["a", "b"],
            "uplift": [0.012, np.nan],
            "ci_lower": [0.008, np.nan],
            "ci_upper": [0.016, np.nan],
        }
    )
    columns = [
        tables.Column("arm", "arm", "text"),
        tables.Column("uplift", "uplift", "percent", ("ci_lower", "ci_upper")),
        tables.Column("missing", "not in the frame", "count"),
    ]
    shown, cells = tables.view(frame, columns)
    assert [c.header for c in shown] == ["arm", "uplift"]
    assert cells[0][1] == tables.Cell("1.20%", "(0.80% to 1.60%)")
    assert cells[1][1] == tables.Cell("–")
    assert cells[0][0].is_text


@pytest.mark.parametrize(("capacity", "text"), [(math.inf, "no limit"), (500.0, "500")])
def test_an_unlimited_capacity_reads_as_such(capacity: float, text: str) -> None:
    frame = pd.DataFrame(
        {"arm": ["a"], "capacity": [capacity], "used": [5.0], "shadow_price": [0.0]}
    )
    _, cells = tables.view(frame, tables.capacity_columns(""))
    assert cells[0][1].text == text


def risk_sources(
    change: list[float], z: list[float], *, last_week: str = "2026-W40", **fields: object
) -> RiskSources:
    """Where the risk comes from, for three causes (a, b, c, largest revenue at risk first)."""
    share = np.array([0.5, 0.3, 0.2])
    causes = pd.DataFrame(
        {
            "cause": ["a", "b", "c"],
            "orders": [500.0, 300.0, 200.0],
            "order_share": [0.5, 0.3, 0.2],
            "at_risk": share * 1000,
            "at_risk_share": share,
            "last_at_risk_share": share - change,
            "share_change": change,
            "share_change_z": z,
        }
    )
    effects = pd.DataFrame(
        {
            "cause": ["a", "b", "c"],
            "uplift": [0.02, 0.01, np.nan],
            "protected": [300.0, -50.0, np.nan],
            "protected_ci_lower": [100.0, -90.0, np.nan],
            "protected_ci_upper": [500.0, -10.0, np.nan],
            "measured": [True, True, False],
        }
    )
    values: dict[str, object] = {
        "model_id": "m",
        "model_note": "",
        "last_week": last_week,
        "at_risk": 1000.0,
        "last_at_risk": 900.0,
        "mean_risk": 0.1,
        "causes": causes,
        "threshold_z": 2.39,
        "basis": "randomised",
        "min_group": 100,
        "effects": effects,
        "calibration": pd.DataFrame(),
        "ece": 0.012,
        "method": "platt",
        "check_orders": 2000,
        "check_predicted": 0.1,
        "check_observed": 0.105,
        "check_ci_lower": 0.092,
        "check_ci_upper": 0.118,
    }
    return RiskSources(**(values | fields))  # type: ignore[arg-type]


def test_risk_source_caption_names_the_cause_that_grew_most() -> None:
    beyond = captions.risk_source_caption(risk_sources([-0.05, 0.04, 0.01], [-2.0, 3.1, 0.9]))
    assert beyond == (
        "1,000 of this week's revenue is at risk (mean risk 10.0%); most of it comes from a: "
        "50.0% of it, from 50.0% of orders. Since 2026-W40, b's share grew most: from 26.0% to "
        "30.0% (+4.0 points, z = 3.10), beyond week-to-week noise (the bar is z = 2.39: the "
        "sampling noise of both weeks' orders, over 3 causes)."
    )
    within = captions.risk_source_caption(risk_sources([-0.02, 0.015, 0.005], [-1, 1.2, 0.4]))
    assert "b's share grew most" in within
    assert "(+1.5 points, z = 1.20), within week-to-week noise" in within
    first = captions.risk_source_caption(risk_sources([np.nan] * 3, [np.nan] * 3, last_week=""))
    assert first.endswith("There is no earlier week to compare with.")
    still = captions.risk_source_caption(risk_sources([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]))
    assert still.endswith("No cause's share of revenue at risk grew since 2026-W40.")


def test_risk_effect_caption_says_how_and_where_the_arms_kept_value() -> None:
    risk = risk_sources([0.0] * 3, [0.0] * 3)
    assert captions.risk_effect_caption(risk, currency="EUR") == (
        "Per cause, the orders given any arm against the control orders. The arms kept most net "
        "value among a's orders: EUR 300 (EUR 100 to EUR 500), retained uplift 2.0%, beyond "
        "noise. Among the orders of b the arms lost net value beyond noise. 1 cause with fewer "
        "than 100 orders in a group shows too few orders."
    )
    losing = risk.effects.assign(protected=[-20.0, -50.0, np.nan], protected_ci_lower=-90.0)
    said = captions.risk_effect_caption(
        risk_sources([0.0] * 3, [0.0] * 3, effects=losing, basis="policy"), VISITS
    )
    assert said.startswith("Per cause, the orders the policy gave an arm against the held-out")
    assert (
        "Among no cause's orders did the arms keep more than they cost; the least lost was " in said
    )
    assert "among a's: -20 (-90 to 500), visited uplift 2.0%." in said
    none = risk.effects.assign(measured=False)
    assert captions.risk_effect_caption(risk_sources([0.0] * 3, [0.0] * 3, effects=none)) == (
        "Per cause, the orders given any arm against the control orders: no cause has enough "
        "orders to measure. 3 causes with fewer than 100 orders in a group show too few orders."
    )


def test_risk_calibration_caption_checks_this_weeks_orders_without_action() -> None:
    held = captions.risk_calibration_caption(risk_sources([0.0] * 3, [0.0] * 3))
    assert held == (
        "The risk model's reliability on its held-out calibration orders (Platt scaling): "
        "expected calibration error 1.20% (the mean gap between predicted risk and the "
        "cancellation rate of orders with that risk). This week its mean predicted risk is "
        "10.0%; the 2,000 orders given no action (holdout and control) were predicted 10.0% and "
        "had a cancellation rate of 10.5% (9.2% to 11.8%): within noise."
    )
    low = risk_sources([0.0] * 3, [0.0] * 3, check_predicted=0.08)
    assert captions.risk_calibration_caption(low, VISITS).endswith(
        "had a no-visit rate of 10.5% (9.2% to 11.8%): beyond noise, the risk is under-predicted "
        "this week."
    )
    unknown = risk_sources([0.0] * 3, [0.0] * 3, ece=np.nan, check_orders=0)
    assert captions.risk_calibration_caption(unknown) == (
        "The risk model's calibration curve is not known. No order of this week was left "
        "without action to check it on."
    )
