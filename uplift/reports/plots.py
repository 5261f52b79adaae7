"""The report's figures, drawn with matplotlib's object API (no pyplot state, Agg canvas).

Each function takes a report table and returns a :class:`~matplotlib.figure.Figure`;
:func:`png_base64` turns one into the text of an embedded ``data:`` image.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from uplift.reports.formats import money
from uplift.reports.results import DEFAULT_WORDS, LearnCheck, OutcomeWords, RiskSources

__all__ = [
    "arm_effects_plot",
    "base_rate_plot",
    "calibration_plot",
    "capacity_plot",
    "loop_plot",
    "png_base64",
    "policy_value_plot",
    "qini_plot",
    "risk_calibration_plot",
    "risk_sources_plot",
    "truth_plot",
]

_SIZE = (7.0, 3.4)
_DPI = 96


def png_base64(figure: Figure) -> str:
    """The figure as a base64 PNG (for ``<img src="data:image/png;base64,...">``)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _percent(axis: Any) -> None:
    """Shares of orders read as percentages, as in the report's tables."""
    axis.set_major_formatter(PercentFormatter(xmax=1.0))


def _unit(label: str, currency: str) -> str:
    return f"{label} ({currency})" if currency else label


def _figure(ncols: int = 1) -> tuple[Figure, list[Any]]:
    figure = Figure(figsize=(_SIZE[0], _SIZE[1]), layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure, list(axes)


def arm_effects_plot(arms: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> Figure:
    """Measured retained uplift per treatment arm with its 95% interval."""
    figure, (ax,) = _figure()
    rows = arms.dropna(subset=["uplift"]).reset_index(drop=True)
    y = np.arange(len(rows))
    ax.errorbar(
        rows["uplift"],
        y,
        xerr=[rows["uplift"] - rows["ci_lower"], rows["ci_upper"] - rows["uplift"]],
        fmt="o",
        capsize=3,
    )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, rows["arm"])
    ax.set_xlabel(f"{words.kept} uplift against the holdout (share of orders)")
    _percent(ax.xaxis)
    ax.set_title("Holdout readout of the week")
    return figure


def _interval_points(ax: Any, rows: pd.DataFrame, label: str | None = None) -> None:
    ax.errorbar(
        rows["predicted"],
        rows["measured"],
        yerr=[rows["measured"] - rows["ci_lower"], rows["ci_upper"] - rows["measured"]],
        fmt="o",
        ms=4,
        capsize=2,
        elinewidth=0.8,
        alpha=0.8,
        label=label,
    )


def calibration_plot(learn: LearnCheck) -> Figure:
    """Predicted against measured uplift: by arm (left) and by decile of prediction (right)."""
    figure, (left, right) = _figure(2)
    _interval_points(left, learn.by_arm.dropna(subset=["measured"]))
    for arm, rows in learn.by_decile.dropna(subset=["measured"]).groupby("arm", sort=True):
        _interval_points(right, rows, str(arm))
    for ax, table in ((left, learn.by_arm), (right, learn.by_decile)):
        low = float(np.nanmin([table["predicted"].min(), table["ci_lower"].min(), 0.0]))
        high = float(np.nanmax([table["predicted"].max(), table["ci_upper"].max(), 0.0]))
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--")
        ax.set_xlabel("predicted uplift")
        _percent(ax.xaxis)
        _percent(ax.yaxis)
    left.set_ylabel("measured uplift (95% interval)")
    left.set_title("by arm (dashed: predicted = measured)", fontsize=10)
    right.set_title("by decile of predicted uplift", fontsize=10)
    right.legend(fontsize=7)
    for row in learn.by_arm[learn.by_arm["flagged"]].to_dict("records"):
        left.annotate(str(row["arm"]), (row["predicted"], row["measured"]), fontsize=8, color="C3")
    return figure


def qini_plot(qini: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> Figure:
    """Qini curve of every arm (measured gain per treated order when treating the top share)."""
    figure, (ax,) = _figure()
    for arm, points in qini.groupby("arm", sort=True):
        line = ax.plot(points["share"], points["value"], label=str(arm), lw=1.5)
        end = points["value"].iloc[-1]
        ax.plot([0, 1], [0, end], color=line[0].get_color(), lw=0.8, ls=":")
    ax.set_xlabel("share of orders treated, best predicted first")
    ax.set_ylabel(f"{words.kept} uplift per treated order")
    _percent(ax.xaxis)
    _percent(ax.yaxis)
    ax.set_title("Qini curves (dotted: random ranking)")
    ax.legend(fontsize=8, ncols=2)
    return figure


def policy_value_plot(values: pd.DataFrame, currency: str = "") -> Figure:
    """Mean net revenue per order of each policy, with its 95% interval."""
    figure, (ax,) = _figure()
    y = np.arange(len(values))
    ax.errorbar(
        values["value"],
        y,
        xerr=[values["value"] - values["ci_lower"], values["ci_upper"] - values["value"]],
        fmt="s",
        capsize=3,
    )
    ax.set_yticks(y, values["policy"])
    ax.set_xlabel(_unit("net revenue per order", currency) + " (doubly robust, 95% interval)")
    ax.set_title("Policy value on the week's log")
    return figure


def capacity_plot(capacity: pd.DataFrame, currency: str = "") -> Figure:
    """Capacity used per arm (grey: the limit, if any), with each limit's shadow price."""
    figure, (ax,) = _figure()
    labels = [
        f"{arm}\n(shadow {money(price, currency, 2)})" if np.isfinite(price) else str(arm)
        for arm, price in zip(capacity["arm"], capacity["shadow_price"], strict=True)
    ]
    x = np.arange(len(capacity))
    limited = np.isfinite(capacity["capacity"].to_numpy(float))
    ax.bar(x[limited], capacity["capacity"][limited], color="lightgrey", label="capacity")
    ax.bar(x, capacity["used"], width=0.5, label="used")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("orders")
    ax.set_title("Capacity use of this week's queue")
    ax.legend(fontsize=8)
    return figure


def base_rate_plot(base_rates: pd.DataFrame, words: OutcomeWords = DEFAULT_WORDS) -> Figure:
    """Cancellation rate (``words.rate``) of the control arm, week by week, with 95% intervals."""
    figure, (ax,) = _figure()
    x = np.arange(len(base_rates))
    ax.fill_between(x, base_rates["ci_lower"], base_rates["ci_upper"], alpha=0.25)
    ax.plot(x, base_rates["cancel_rate"], marker="o")
    ax.set_xticks(x, base_rates["week"], fontsize=8)
    ax.set_ylabel(f"{words.rate}, control arm")
    _percent(ax.yaxis)
    ax.set_title(f"Base {words.rate} by week")
    return figure


def loop_plot(loop: pd.DataFrame, currency: str = "") -> Figure:
    """Net value the policy protected per week against its holdout (left) and in total
    (right), with 95% intervals and what the model predicted."""
    figure, (weekly, total) = _figure(2)
    x = np.arange(len(loop))
    measured = loop["protected"].notna().to_numpy()
    weekly.errorbar(
        x[measured],
        loop["protected"][measured],
        yerr=[
            (loop["protected"] - loop["ci_lower"])[measured],
            (loop["ci_upper"] - loop["protected"])[measured],
        ],
        fmt="o",
        capsize=3,
        label="measured",
    )
    weekly.plot(x, loop["predicted"], "x", label="predicted")
    weekly.axhline(0, color="grey", lw=1)
    weekly.set_title("Protected net value per week")
    total.fill_between(x, loop["cumulative_ci_lower"], loop["cumulative_ci_upper"], alpha=0.25)
    total.plot(x, loop["cumulative"], marker="o")
    total.set_title("Cumulative")
    for ax in (weekly, total):
        ax.set_xticks(x, loop["week"], fontsize=7, rotation=45)
    weekly.legend(fontsize=8)
    if currency:
        weekly.set_ylabel(_unit("net value", currency))
    return figure


def truth_plot(loop: pd.DataFrame, currency: str = "") -> Figure:
    """A simulation only: what the week's decisions were truly worth, the oracle's value with
    the same capacities, and the estimate of the protected value beside its true value."""
    figure, (ax,) = _figure()
    x = np.arange(len(loop))
    ax.plot(x, loop["oracle_value"], marker="s", label="oracle (true effects)")
    ax.plot(x, loop["true_value"], marker="o", label="decisions, true value")
    ax.plot(x, loop["true_protected"], marker="^", label="acted orders, true value")
    ax.plot(x, loop["protected"], "x", label="acted orders, estimated")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(x, loop["week"], fontsize=7, rotation=45)
    ax.set_ylabel(_unit("net value of the week", currency))
    ax.set_title("Against the simulation's truth")
    ax.legend(fontsize=7)
    return figure


def risk_sources_plot(risk: RiskSources) -> Figure:
    """Each cause's share of the week's revenue at risk, this week beside last week."""
    figure, (ax,) = _figure()
    causes = risk.causes.iloc[::-1].reset_index(drop=True)  # the largest on top
    y = np.arange(len(causes))
    this = causes["at_risk_share"].astype(float).fillna(0.0)
    ax.barh(y + 0.2, this, height=0.4, label="this week")
    if risk.last_week:
        last = causes["last_at_risk_share"].astype(float).fillna(0.0)
        ax.barh(y - 0.2, last, height=0.4, color="lightgrey", label=f"last week ({risk.last_week})")
    ax.set_yticks(y, causes["cause"])
    ax.set_xlabel("share of the week's revenue at risk (order value x risk)")
    _percent(ax.xaxis)
    ax.set_title("Where the risk comes from")
    ax.legend(fontsize=8)
    return figure


def risk_calibration_plot(risk: RiskSources, words: OutcomeWords = DEFAULT_WORDS) -> Figure:
    """The risk model's reliability curve on its calibration orders, and this week's orders
    given no action (mean predicted risk against their cancellation rate, 95% interval)."""
    figure = Figure(figsize=(4.2, 3.2), layout="constrained")
    ax = figure.subplots()
    ax.grid(alpha=0.3)
    curve = risk.calibration
    if not curve.empty:
        ax.plot(curve["mean_predicted"], curve["observed"], marker="o", ms=4, label="calibration")
    if risk.check_orders:
        ax.errorbar(
            [risk.check_predicted],
            [risk.check_observed],
            yerr=[
                [risk.check_observed - risk.check_ci_lower],
                [risk.check_ci_upper - risk.check_observed],
            ],
            fmt="s",
            color="C3",
            capsize=3,
            label="this week, no action",
        )
    values = [risk.check_ci_upper, risk.check_predicted]
    if not curve.empty:
        values += [curve["mean_predicted"].max(), curve["observed"].max()]
    high = float(np.nanmax([*values, 0.01]))
    ax.plot([0, high], [0, high], color="grey", lw=1, ls="--")
    ax.set_xlabel("predicted risk")
    ax.set_ylabel(f"{words.rate} (observed)")
    _percent(ax.xaxis)
    _percent(ax.yaxis)
    ax.set_title("Risk calibration (dashed: perfect)", fontsize=10)
    ax.legend(fontsize=7)
    return figure
