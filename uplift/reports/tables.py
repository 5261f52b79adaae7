"""What each table of the page shows: plain headers, one unit per column, intervals in the cell.

A table is a list of :class:`Column`: its source column in the report's frame, a header, a
unit (see :mod:`uplift.reports.formats`) and, for an estimate, the two columns of its 95%
interval, which share its cell ("1.20% (0.80% to 1.60%)") so that no table needs three
columns per figure. Columns missing from a frame (an older report.json, a week without a
simulation's truth) are left out. Money cells carry no currency: the header names it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from uplift.reports.formats import (
    DASH,
    count,
    interval,
    is_number,
    money,
    number,
    p_value,
    percent,
    score,
)
from uplift.reports.results import OutcomeWords

__all__ = [
    "Cell",
    "Column",
    "arm_columns",
    "base_rate_columns",
    "capacity_columns",
    "compliance_columns",
    "learn_columns",
    "loop_columns",
    "mix_columns",
    "mix_text",
    "model_columns",
    "policy_columns",
    "policy_value_columns",
    "qini_columns",
    "risk_cause_columns",
    "risk_effect_columns",
    "segment_columns",
    "view",
]

Unit = Literal[
    "text", "count", "percent", "money", "per_order", "p", "score", "number", "flag", "limit"
]


@dataclass(frozen=True)
class Column:
    """One column of a shown table: where its figures come from and how they read."""

    source: str
    header: str
    unit: Unit = "number"
    interval: tuple[str, str] | None = None


@dataclass(frozen=True)
class Cell:
    """A formatted cell: the figure, its interval's text (or ""), and whether it is text."""

    text: str
    interval: str = ""
    is_text: bool = False


def _limit(value: object) -> str:
    # An arm without a capacity limit is stored as infinity (null in report.json).
    return count(value) if is_number(value) else "no limit"


_FORMATS: dict[Unit, Callable[[object], str]] = {
    "text": lambda v: DASH if v is None or (isinstance(v, float) and math.isnan(v)) else str(v),
    "count": count,
    "percent": percent,
    "money": money,
    "per_order": lambda v: money(v, decimals=2),
    "p": p_value,
    "score": score,
    "number": number,
    "flag": lambda v: ("yes" if v else "no") if isinstance(v, bool | np.bool_) else DASH,
    "limit": _limit,
}


def _cell(row: pd.Series, column: Column) -> Cell:
    fmt = _FORMATS[column.unit]
    text = fmt(row[column.source])
    bounds = ""
    if column.interval is not None and text != DASH:
        lower, upper = (fmt(row.get(c)) for c in column.interval)
        # An interval of no width (a total before any week was measured) says nothing.
        bounds = interval(lower, upper) if lower != upper else ""
    return Cell(text, bounds, column.unit == "text")


def view(
    frame: pd.DataFrame, columns: list[Column], limit: int | None = None
) -> tuple[list[Column], list[list[Cell]]]:
    """The columns of ``columns`` that ``frame`` has, and the cells of its first ``limit`` rows."""
    shown = [c for c in columns if c.source in frame.columns]
    rows = frame if limit is None else frame.head(limit)
    cells = [[_cell(row, c) for c in shown] for _, row in rows.astype(object).iterrows()]
    return shown, cells


def _money(header: str, currency: str) -> str:
    return f"{header} ({currency})" if currency else header


def arm_columns(words: OutcomeWords, currency: str) -> list[Column]:
    """The experiment readout per arm."""
    return [
        Column("arm", "arm", "text"),
        Column("orders", "orders", "count"),
        Column("retention", words.kept, "percent"),
        Column("uplift", "uplift", "percent", ("ci_lower", "ci_upper")),
        Column("p_value", "p, adjusted over arms", "p"),
        Column("protected", _money("revenue protected", currency), "money"),
        Column("cost", _money("cost", currency), "money"),
        Column(
            "net_value", _money("net value", currency), "money", ("net_ci_lower", "net_ci_upper")
        ),
    ]


def segment_columns(segments: pd.DataFrame) -> list[Column]:
    """The readout per segment level and arm, with raw and Holm-adjusted p-values."""
    if "p_raw" not in segments.columns:  # a report written before the Holm column
        p = [Column("p_value", "p, adjusted over arms", "p")]
    else:
        p = [Column("p_raw", "p", "p"), Column("p_value", "p, Holm", "p")]
    return [
        Column("segment", "segment", "text"),
        Column("level", "level", "text"),
        Column("arm", "arm", "text"),
        Column("orders", "orders", "count"),
        Column("uplift", "uplift", "percent", ("ci_lower", "ci_upper")),
        *p,
    ]


def policy_columns(currency: str) -> list[Column]:
    """The policy's decisions against its holdout, per intended arm and in total."""
    return [
        Column("arm", "arm", "text"),
        Column("acted", "orders acted on", "count"),
        Column("held", "held out", "count"),
        Column("uplift", "uplift", "percent", ("uplift_ci_lower", "uplift_ci_upper")),
        Column("predicted_uplift", "predicted uplift", "percent"),
        Column("orders_saved", "orders saved", "count"),
        Column(
            "protected",
            _money("net value protected", currency),
            "money",
            ("protected_ci_lower", "protected_ci_upper"),
        ),
        Column("net_per_order", _money("net per order", currency), "per_order"),
        Column("predicted_net", _money("predicted net per order", currency), "per_order"),
        Column("delivered", "delivered", "percent"),
    ]


def compliance_columns() -> list[Column]:
    """Orders the queue decided per arm, and how many were logged with another arm."""
    return [
        Column("arm", "arm", "text"),
        Column("decided", "orders decided", "count"),
        Column("logged_other_arm", "logged with another arm", "count"),
    ]


def learn_columns() -> list[Column]:
    """Last week's predictions against this week's holdout, per arm."""
    return [
        Column("arm", "arm", "text"),
        Column("n_treated", "orders given the arm", "count"),
        Column("n_control", "orders compared", "count"),
        Column("predicted", "predicted uplift", "percent"),
        Column("measured", "measured uplift", "percent", ("ci_lower", "ci_upper")),
        Column("z", "z", "score"),
        Column("flagged", "flagged", "flag"),
    ]


def model_columns(currency: str) -> list[Column]:
    """Champion and challenger, valued on the same held-out orders."""
    return [
        Column("role", "role", "text"),
        Column("model_id", "model", "text"),
        Column("learner", "learner", "text"),
        Column("trained_in", "trained in", "text"),
        Column("trained_through", "trained through", "text"),
        Column("train_orders", "training orders", "count"),
        Column(
            "policy_value",
            _money("net value per order", currency),
            "per_order",
            ("ci_lower", "ci_upper"),
        ),
    ]


def policy_value_columns(currency: str) -> list[Column]:
    """Each policy's net value per order, and its difference from treating no one."""
    return [
        Column("policy", "policy", "text"),
        Column(
            "value", _money("net value per order", currency), "per_order", ("ci_lower", "ci_upper")
        ),
        Column(
            "diff",
            _money("more than treating no one", currency),
            "per_order",
            ("diff_ci_lower", "diff_ci_upper"),
        ),
    ]


def loop_columns(currency: str) -> list[Column]:
    """The loop week by week (the truth's columns only in a simulation)."""
    return [
        Column("week", "week", "text"),
        Column(
            "protected",
            _money("net value protected", currency),
            "money",
            ("ci_lower", "ci_upper"),
        ),
        Column("predicted", _money("predicted", currency), "money"),
        Column(
            "cumulative",
            _money("running total", currency),
            "money",
            ("cumulative_ci_lower", "cumulative_ci_upper"),
        ),
        Column("holdout_cost", _money("given up to the holdout", currency), "money"),
        Column("explore_cost", _money("given up to exploration", currency), "money"),
        Column("true_value", _money("decisions, true value", currency), "money"),
        Column("true_protected", _money("acted orders, true value", currency), "money"),
        Column("oracle_value", _money("oracle, true value", currency), "money"),
    ]


def qini_columns(summary: pd.DataFrame) -> list[Column]:
    """Targeting figures per arm: all of them shares of orders, so percentages."""
    columns = [
        Column("arm", "arm", "text"),
        Column("n_treated", "orders treated", "count"),
        Column("n_control", "orders on control", "count"),
        Column("ate", "uplift, all orders", "percent"),
        Column("auuc", "AUUC", "percent"),
        Column("qini_coefficient", "Qini", "percent", ("qini_ci_lower", "qini_ci_upper")),
    ]
    for name in summary.columns:
        top = re.fullmatch(r"uplift_at_(\d+)", str(name))
        if top:
            columns.append(Column(name, f"uplift, top {top.group(1)}%", "percent"))
    return columns


def capacity_columns(currency: str) -> list[Column]:
    """Uses of each limited arm in the queue, and what one more would earn."""
    return [
        Column("arm", "arm", "text"),
        Column("capacity", "capacity", "limit"),
        Column("used", "used", "count"),
        Column("shadow_price", _money("shadow price per use", currency), "per_order"),
    ]


def base_rate_columns(words: OutcomeWords) -> list[Column]:
    """The control arm's rate of the bad outcome, week by week."""
    return [
        Column("week", "week", "text"),
        Column("orders", "orders", "count"),
        Column("cancel_rate", words.rate, "percent", ("ci_lower", "ci_upper")),
    ]


def risk_cause_columns(currency: str) -> list[Column]:
    """Where the week's risk comes from: each cause's orders and revenue at risk, this week
    against last week (the change in points of the share, with its 95% interval)."""
    return [
        Column("cause", "cause", "text"),
        Column("orders", "orders", "count"),
        Column("order_share", "share of orders", "percent"),
        Column("mean_risk", "mean risk", "percent"),
        Column("at_risk", _money("revenue at risk", currency), "money"),
        Column("at_risk_share", "share of revenue at risk", "percent"),
        Column("last_at_risk_share", "last week", "percent"),
        Column(
            "share_change",
            "change",
            "percent",
            ("share_change_ci_lower", "share_change_ci_upper"),
        ),
        Column("at_risk_change", _money("change in revenue at risk", currency), "money"),
    ]


def risk_effect_columns(words: OutcomeWords, currency: str, basis: str) -> list[Column]:
    """What the arms given to each cause's orders did: the policy's acted orders against its
    holdout (``basis`` "policy"), or the treated orders against control."""
    held = "held out" if basis == "policy" else "on control"
    return [
        Column("cause", "cause", "text"),
        Column("acted", "orders given an arm", "count"),
        Column("held", held, "count"),
        Column("uplift", f"{words.kept} uplift", "percent", ("uplift_ci_lower", "uplift_ci_upper")),
        Column("orders_saved", "orders saved", "count"),
        Column(
            "protected",
            _money("net value protected", currency),
            "money",
            ("protected_ci_lower", "protected_ci_upper"),
        ),
        Column("note", "note", "text"),
    ]


def mix_columns() -> list[Column]:
    """How the order mix moved; ``previous`` and ``current`` are written by :func:`mix_text`."""
    return [
        Column("feature", "feature", "text"),
        Column("level", "level", "text"),
        Column("previous", "last week", "text"),
        Column("current", "this week", "text"),
        Column("change", "change (standardised)", "score"),
        Column("shifted", "shifted", "flag"),
    ]


def mix_text(mix: pd.DataFrame) -> pd.DataFrame:
    """The mix table with ``previous`` and ``current`` as text: a level's share as a
    percentage, a numeric feature's mean as a number."""
    if mix.empty:
        return mix
    means = mix["level"] == "mean"

    def written(values: pd.Series) -> list[str]:
        return [
            number(v) if m else percent(v) if is_number(v) else DASH
            for v, m in zip(values, means, strict=True)
        ]

    return mix.assign(previous=written(mix["previous"]), current=written(mix["current"]))
