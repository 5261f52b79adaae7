"""Assemble a :class:`WeeklyReport` from result objects: readouts, checks, values, queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from uplift.reports.formats import money, percent
from uplift.reports.results import (
    DEFAULT_WORDS,
    Action,
    Headline,
    LearnCheck,
    ModelChange,
    OutcomeWords,
    RiskSources,
    SampleRatio,
    WeeklyReport,
)

if TYPE_CHECKING:
    from uplift.experiment.holdout import PolicyReadout
    from uplift.experiment.readout import Readout

__all__ = ["MIN_SHADOW_PRICE", "POLICY_COLUMNS", "build_weekly_report", "holm", "policy_table"]

#: A shadow price below this (currency per extra use) is not worth a sentence.
MIN_SHADOW_PRICE = 0.01


def arm_table(readout: Readout, values: pd.DataFrame) -> pd.DataFrame:
    """Per treatment arm: the readout's retained uplift beside the revenue it protected.

    ``values`` is :func:`uplift.reports.measures.arm_value`'s table (totals of the week).
    """
    effects = readout.effects
    retained = effects[effects["metric"] == "retained_rate"].set_index("arm")
    arms = readout.arms.set_index("arm")
    table = pd.DataFrame(
        {
            "orders": arms["n"],
            "retention": arms["retained_rate"],
            "uplift": retained["difference"],
            "ci_lower": retained["ci_lower"],
            "ci_upper": retained["ci_upper"],
            "p_value": retained["p_value_adjusted"],
        }
    )
    extra = values.set_index("arm").drop(columns="orders")
    return table.join(extra).rename_axis("arm").reset_index()


SEGMENT_COLUMNS = (
    "segment", "level", "arm", "orders", "uplift", "ci_lower", "ci_upper", "p_raw", "p_value",
)  # fmt: skip


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values over every p-value given; NaN (not tested) stays NaN.

    Holm rather than Benjamini-Hochberg: a segment row is read as a finding to act on, so the
    chance of any false one is what is kept at the test's level, under any dependence between
    rows (segments of different columns share orders).
    """
    tested = p_values.notna().to_numpy()
    adjusted = np.full(len(p_values), np.nan)
    if tested.any():
        adjusted[tested] = multipletests(p_values.to_numpy(float)[tested], method="holm")[1]
    return pd.Series(adjusted, index=p_values.index)


def segment_table(readouts: Sequence[Readout]) -> pd.DataFrame:
    """Retained uplift per segment level and arm, from readouts broken down by a segment.

    ``p_raw`` is each comparison's own; ``p_value`` is Holm-adjusted over every row of every
    segment column, the whole family a reader scans.
    """
    frames = []
    for r in readouts:
        if r.segments is None:
            continue
        rows = r.segments[r.segments["metric"] == "retained_rate"]
        frames.append(
            pd.DataFrame(
                {
                    "segment": r.segment_column,
                    "level": rows["segment"],
                    "arm": rows["arm"],
                    "orders": rows["n_arm"] + rows["n_control"],
                    "uplift": rows["difference"],
                    "ci_lower": rows["ci_lower"],
                    "ci_upper": rows["ci_upper"],
                    "p_raw": rows["p_value"],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(SEGMENT_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    table["p_value"] = holm(table["p_raw"])
    return table.sort_values("p_raw", kind="stable").reset_index(drop=True)


POLICY_COLUMNS = (
    "arm",
    "acted",
    "held",
    "uplift",
    "uplift_ci_lower",
    "uplift_ci_upper",
    "predicted_uplift",
    "orders_saved",
    "protected",
    "protected_ci_lower",
    "protected_ci_upper",
    "predicted_net",
    "net_per_order",
    "delivered",
)


def policy_table(readout: PolicyReadout | None) -> pd.DataFrame:
    """The policy against its holdout: a row per intended arm, then the ``total``."""
    if readout is None or readout.by_arm.empty:
        return pd.DataFrame(columns=list(POLICY_COLUMNS))
    total = readout.total
    row = {
        "arm": "total",
        "acted": total["acted"],
        "held": total["held"],
        "orders_saved": total["orders_saved"],
        "protected": total["protected"],
        "protected_ci_lower": total["protected_ci_lower"],
        "protected_ci_upper": total["protected_ci_upper"],
    }
    arms = readout.by_arm[list(POLICY_COLUMNS)]
    # Arms intended for too few orders to measure: their counts, no figures.
    small = readout.unmeasured.reindex(columns=list(POLICY_COLUMNS))
    return pd.concat([arms, small, pd.DataFrame([row])], ignore_index=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def recommend(
    arms: pd.DataFrame,
    segments: pd.DataFrame,
    capacity: pd.DataFrame,
    alpha: float,
    *,
    currency: str = "",
    words: OutcomeWords = DEFAULT_WORDS,
) -> tuple[Action, ...]:
    """What to change, in plain words, from the week's measured effects and shadow prices.

    Scale up an arm whose protected revenue clears its cost even at the interval's lower end
    (use less one that misses it even at the upper end); stop an arm for a segment where it
    raises the bad outcome beyond noise (``p_value``: Holm over every segment row); add
    capacity to an arm whose limit binds with a positive price.
    """
    return (
        *_scale_up(arms, alpha, currency, words),
        *_use_less(arms, currency),
        *_segment_stops(segments, alpha, words),
        *_more_capacity(capacity, currency),
    )


def _scale_up(arms: pd.DataFrame, alpha: float, currency: str, words: OutcomeWords) -> list[Action]:
    paying = arms[(arms["p_value"] < alpha) & (arms["net_ci_lower"] > 0)]
    return [
        Action(
            "scale_up",
            str(row["arm"]),
            f"Scale up {row['arm']}: it {words.keeps} {percent(row['uplift'], 1)} more orders "
            f"({percent(row['ci_lower'], 1)} to {percent(row['ci_upper'], 1)}) and this week "
            f"protected {money(row['protected'], currency)} of revenue for a cost of "
            f"{money(row['cost'], currency)}, {money(row['net_value'], currency)} net "
            f"({money(row['net_ci_lower'], currency)} to {money(row['net_ci_upper'], currency)}).",
            float(row["net_value"]),
        )
        for row in _records(paying.sort_values("net_value", ascending=False))
    ]


def _use_less(arms: pd.DataFrame, currency: str) -> list[Action]:
    return [
        Action(
            "stop",
            str(row["arm"]),
            f"Stop giving {row['arm']} at random: in the holdout test it cost "
            f"{money(row['cost'], currency)} this week but protected only "
            f"{money(row['protected'], currency)} of revenue (at most "
            f"{money(row['protected_ci_upper'], currency)}); keep it for the orders the model "
            "ranks.",
            float(row["net_value"]),
        )
        for row in _records(arms[arms["net_ci_upper"] < 0])
    ]


def _segment_stops(segments: pd.DataFrame, alpha: float, words: OutcomeWords) -> list[Action]:
    if segments.empty:
        return []
    harmful = segments[(segments["ci_upper"] < 0) & (segments["p_value"] < alpha)]
    return [
        Action(
            "stop",
            str(row["arm"]),
            f"Stop {row['arm']} for {row['segment']} = {row['level']}: it raises "
            f"{words.lost} there by {percent(-row['uplift'], 1)} "
            f"({percent(-row['ci_upper'], 1)} to {percent(-row['ci_lower'], 1)}).",
            float(row["uplift"]),
        )
        for row in _records(harmful.sort_values("uplift"))
    ]


def _more_capacity(capacity: pd.DataFrame, currency: str) -> list[Action]:
    if capacity.empty:
        return []
    return [
        Action(
            "add_capacity",
            str(row["arm"]),
            f"Add {row['arm']} capacity: the queue filled all {row['capacity']:,.0f} uses, "
            f"and one more, given to the next best order, would earn about "
            f"{money(row['shadow_price'], currency, 2)} net of its cost: capacity that costs "
            "less than that per use pays for itself.",
            float(row["shadow_price"]),
        )
        for row in _records(capacity[capacity["shadow_price"] > MIN_SHADOW_PRICE])
    ]


def build_weekly_report(
    *,
    week: str,
    headline: Headline,
    readout: Readout,
    segments: Sequence[Readout],
    arm_values: pd.DataFrame,
    learn: LearnCheck | None,
    models: ModelChange | None,
    qini: pd.DataFrame,
    qini_summary: pd.DataFrame,
    policy_values: pd.DataFrame,
    capacity: pd.DataFrame,
    mix: pd.DataFrame,
    base_rates: pd.DataFrame,
    notes: Sequence[str] = (),
    policy: PolicyReadout | None = None,
    compliance: pd.DataFrame | None = None,
    loop: pd.DataFrame | None = None,
    currency: str = "",
    outcome_words: OutcomeWords = DEFAULT_WORDS,
    risk: RiskSources | None = None,
) -> WeeklyReport:
    """The weekly report of ``week`` from its result objects; nothing is fitted here.

    ``currency`` (e.g. "EUR") is written before every money figure ("EUR 1,234"; empty: the
    bare number); ``outcome_words`` names the outcome (defaults: kept against cancelled).
    """
    arms = arm_table(readout, arm_values)
    segment_rows = segment_table(segments)
    srm = readout.srm
    sample_ratio = (
        SampleRatio(srm.statistic, srm.p_value, srm.passed)
        if srm is not None
        else SampleRatio(np.nan, np.nan, True)
    )
    all_notes = list(dict.fromkeys([*readout.notes, *notes]))
    table = policy_table(policy)
    decided = not table.empty
    if decided:
        # The per-arm and per-segment readouts of a decided week weigh a few explored orders
        # heavily; acting on them would act on noise, so only capacity advice is given.
        all_notes.append(
            "Arms were decided by the policy this week: what to change is drawn from the queue's "
            "capacity only, not from the per-arm or per-segment readout."
        )
    if compliance is not None and compliance["logged_other_arm"].sum() > 0:
        other = int(compliance["logged_other_arm"].sum())
        all_notes.append(
            f"{other:,} of {int(compliance['decided'].sum()):,} decided orders were logged with "
            "another arm than the queue gave them (non-compliance): they are left out of every "
            "figure; see the compliance table."
        )
    if srm is not None and not srm.passed:
        all_notes.insert(
            0,
            "The sample-ratio check failed: the week's arms are not the "
            "designed sizes, so its effects are not trustworthy until that is fixed.",
        )
    return WeeklyReport(
        week=week,
        created_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        headline=headline,
        srm=sample_ratio,
        arms=arms,
        segments=segment_rows,
        learn=learn,
        models=models,
        qini=qini,
        qini_summary=qini_summary,
        policy_values=policy_values,
        capacity=capacity,
        mix=mix,
        base_rates=base_rates,
        actions=recommend(
            arms.iloc[:0] if decided else arms,
            segment_rows.iloc[:0] if decided else segment_rows,
            capacity,
            readout.alpha,
            currency=currency,
            words=outcome_words,
        ),
        notes=tuple(all_notes),
        policy=table,
        compliance=compliance if compliance is not None else pd.DataFrame(),
        loop=loop if loop is not None else pd.DataFrame(),
        currency=currency,
        outcome_words=outcome_words,
        risk=risk,
    )
