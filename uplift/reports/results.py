"""What a weekly report holds: frozen dataclasses of raw, unrounded numbers.

Only :mod:`uplift.reports.render` rounds and formats; ``to_dict`` gives the same numbers for
``report.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from uplift.data.files import to_json_ready
from uplift.data.project import Words
from uplift.exceptions import SchemaError

__all__ = [
    "DEFAULT_WORDS",
    "Action",
    "Headline",
    "LearnCheck",
    "ModelChange",
    "OutcomeWords",
    "RiskSources",
    "SampleRatio",
    "WeeklyReport",
    "read_report",
]


#: How the page names the outcome (the project file's [outcome] words).
OutcomeWords = Words
#: The words of an order kept rather than cancelled.
DEFAULT_WORDS = OutcomeWords()


@dataclass(frozen=True)
class Headline:
    """What the interventions of the week did, measured against the randomised holdout.

    ``retained_revenue_protected`` and ``cancellations_avoided`` are totals over the treated
    orders of the week (see :func:`uplift.reports.measures.headline`); intervals are normal
    95%. ``return_per_cost`` is the protected revenue per unit of ``cost`` (NaN when nothing
    was spent), with its interval ``return_ci_lower`` to ``return_ci_upper``.
    """

    orders: int
    treated_orders: int
    holdout_orders: int
    retained_revenue_protected: float
    protected_ci_lower: float
    protected_ci_upper: float
    cancellations_avoided: float
    avoided_ci_lower: float
    avoided_ci_upper: float
    cost: float
    return_per_cost: float
    return_ci_lower: float = math.nan
    return_ci_upper: float = math.nan


@dataclass(frozen=True)
class SampleRatio:
    """The week's sample-ratio check: chi-square of orders per arm against the logged design."""

    statistic: float
    p_value: float
    passed: bool


@dataclass(frozen=True, eq=False)
class LearnCheck:
    """Last week's champion's predicted uplift against this week's measured uplift.

    ``by_arm``: ``arm``, ``n_treated``, ``n_control``, ``predicted``, ``measured``, ``se``,
    ``ci_lower``, ``ci_upper``, ``z`` ((measured - predicted) / se_total) and ``flagged``.
    ``by_decile``: ``arm``, ``bucket``, ``predicted``, ``measured``, ``se``, ``ci_lower``,
    ``ci_upper``, ``covers`` (one row per arm and decile of predicted uplift).
    ``flagged`` is True when any arm's ``|z|`` passes ``threshold_z``.
    """

    model_id: str
    trained_through: str
    by_arm: pd.DataFrame
    by_decile: pd.DataFrame
    threshold_z: float
    flagged: bool


@dataclass(frozen=True, eq=False)
class ModelChange:
    """Champion against challenger by doubly-robust policy value on the newest week.

    ``table``: ``role``, ``model_id``, ``learner``, ``trained_through``, ``policy_value``,
    ``se``, ``ci_lower``, ``ci_upper`` (mean net revenue per order). ``diff`` is challenger
    minus champion on the same orders (paired) with ``diff_se``.
    """

    table: pd.DataFrame
    diff: float
    diff_se: float
    promoted: bool
    reason: str


@dataclass(frozen=True, eq=False)
class RiskSources:
    """Where the week's cancellation risk comes from: each order's risk and cause, as the risk
    model of ``model_id`` predicts them, for this week's orders and last week's.

    ``model_note`` says why the model is not the champion in place during the week (the first
    week: the model deployed after it), else "". ``last_week`` is the week compared with (""
    when there is none). ``causes``, one row per cause, largest revenue at risk first:
    ``cause``, ``orders``, ``order_share``, ``mean_risk``, ``at_risk`` (sum of order value x
    risk), ``at_risk_share`` (of the week's ``at_risk``), and last week's ``last_orders``,
    ``last_order_share``, ``last_mean_risk``, ``last_at_risk``, ``last_at_risk_share``;
    ``share_change`` (this week's share minus last week's) with ``share_change_se``,
    ``share_change_ci_lower``, ``share_change_ci_upper`` and ``share_change_z``;
    ``at_risk_change``. A share grew beyond noise when its ``share_change_z`` passes
    ``threshold_z``.
    ``effects``, one row per cause: what the arms given to its orders did, by ``basis``
    ("policy": the policy's acted orders against its holdout; "randomised": any treatment
    against control): ``acted``, ``held``, ``uplift`` (kept share, per acted order) with
    ``uplift_ci_lower``, ``uplift_ci_upper``; ``orders_saved``; ``protected`` (net value, after
    the arms' costs) with ``protected_ci_lower``, ``protected_ci_upper``; ``measured`` (False:
    fewer than ``min_group`` orders in a group, no figures) and ``note``.
    ``calibration``: the risk model's reliability curve out of fold on its calibration orders
    (``mean_predicted``, ``observed``, ``orders``, ``weight``), its ``ece`` and ``method``.
    ``check_*``: this week's orders given no action, their mean predicted risk
    (``check_predicted``) and cancellation rate (``check_observed``, with its interval).
    """

    model_id: str
    model_note: str
    last_week: str
    at_risk: float
    last_at_risk: float
    mean_risk: float
    causes: pd.DataFrame
    threshold_z: float
    basis: str
    min_group: int
    effects: pd.DataFrame
    calibration: pd.DataFrame
    ece: float
    method: str
    check_orders: int
    check_predicted: float
    check_observed: float
    check_ci_lower: float
    check_ci_upper: float


@dataclass(frozen=True)
class Action:
    """One thing to change, in plain words: ``kind`` is scale_up, stop, or add_capacity."""

    kind: str
    arm: str
    text: str
    value: float


@dataclass(frozen=True, eq=False)
class WeeklyReport:
    """Everything the weekly report shows; every table a DataFrame with snake_case columns.

    ``arms``: per-arm readout of the week (``arm``, ``orders``, ``share``, ``expected_share``,
    ``retention``, ``uplift``, ``ci_lower``, ``ci_upper``, ``p_value``, ``revenue_uplift``).
    ``segments``: ``segment``, ``level``, ``arm``, ``orders``, ``uplift``, ``ci_lower``,
    ``ci_upper``. ``qini``: ``arm``, ``share``, ``value`` points; ``qini_summary`` per arm.
    ``policy_values``: ``policy``, ``value``, ``se``, ``ci_lower``, ``ci_upper``, ``diff``,
    ``diff_ci_lower``, ``diff_ci_upper`` (against treat-none). ``capacity``: ``arm``,
    ``capacity``, ``used``, ``shadow_price``. ``mix``: ``feature``, ``level``, ``previous``,
    ``current``, ``change``. ``base_rates``: ``week``, ``orders``, ``cancel_rate``,
    ``ci_lower``, ``ci_upper`` of the control arm.
    ``policy``: the policy's decisions against its holdout, per intended arm and a ``total``
    row (see :class:`uplift.experiment.holdout.PolicyReadout`; empty when the week's arms were
    not decided by a stored queue). ``compliance``: per decided arm, orders ``decided`` and
    ``logged_other_arm`` (left out of every figure). ``loop``: one row per week of the loop so
    far: ``week``, ``protected`` with ``ci_lower``, ``ci_upper``, ``predicted``,
    ``cumulative`` with its interval, ``holdout_cost`` and ``explore_cost`` (net value the
    holdout and exploration gave up), and, when a simulation's truth was given,
    ``true_value``, ``true_protected`` and ``oracle_value``.
    ``segments`` also has ``p_raw`` and ``p_value`` (Holm-adjusted over every row tested).
    ``currency`` (e.g. "EUR") labels every money figure; ``outcome_words`` names the outcome.
    ``risk``: where the week's cancellation risk comes from (None when the model has no risk
    model, or for a report written before the section).
    """

    week: str
    created_at: str
    headline: Headline
    srm: SampleRatio
    arms: pd.DataFrame
    segments: pd.DataFrame
    learn: LearnCheck | None
    models: ModelChange | None
    qini: pd.DataFrame
    qini_summary: pd.DataFrame
    policy_values: pd.DataFrame
    capacity: pd.DataFrame
    mix: pd.DataFrame
    base_rates: pd.DataFrame
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()
    policy: pd.DataFrame = field(default_factory=pd.DataFrame)
    compliance: pd.DataFrame = field(default_factory=pd.DataFrame)
    loop: pd.DataFrame = field(default_factory=pd.DataFrame)
    currency: str = ""
    outcome_words: OutcomeWords = field(default_factory=OutcomeWords)
    risk: RiskSources | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every figure of the report as JSON-ready values (unrounded; NaN becomes null)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeeklyReport:
        """The report that ``to_dict`` (``report.json``) was made from."""
        learn, models, risk = data["learn"], data["models"], data.get("risk")
        return cls(
            week=data["week"],
            created_at=data["created_at"],
            headline=_restore(Headline, data["headline"]),
            srm=_restore(SampleRatio, data["srm"]),
            arms=pd.DataFrame(data["arms"]),
            segments=pd.DataFrame(data["segments"]),
            learn=None if learn is None else _restore(LearnCheck, learn),
            models=None if models is None else _restore(ModelChange, models),
            qini=pd.DataFrame(data["qini"]),
            qini_summary=pd.DataFrame(data["qini_summary"]),
            policy_values=pd.DataFrame(data["policy_values"]),
            capacity=pd.DataFrame(data["capacity"]),
            mix=pd.DataFrame(data["mix"]),
            base_rates=pd.DataFrame(data["base_rates"]),
            actions=tuple(Action(**action) for action in data["actions"]),
            notes=tuple(data["notes"]),
            policy=pd.DataFrame(data.get("policy", [])),
            compliance=pd.DataFrame(data.get("compliance", [])),
            loop=pd.DataFrame(data.get("loop", [])),
            currency=data.get("currency", ""),
            outcome_words=OutcomeWords(**data.get("outcome_words", {})),
            risk=None if risk is None else _restore(RiskSources, risk),
        )


def _restore(kind: type[Any], data: Mapping[str, Any]) -> Any:
    """A dataclass from its ``_plain`` form: tables back to frames, null floats back to NaN."""
    values = {}
    for f in fields(kind):
        if f.name not in data:
            continue  # a field added since the report was written: its default
        value = data[f.name]
        if f.type == "pd.DataFrame":
            value = pd.DataFrame(value)
        elif f.type == "float" and value is None:
            value = math.nan
        values[f.name] = value
    return kind(**values)


def read_report(path: str | Path) -> WeeklyReport:
    """Read a written report back: ``path`` is its ``report.json`` or the folder holding it."""
    source = Path(path)
    source = source / "report.json" if source.is_dir() else source
    if not source.is_file():
        raise SchemaError(f"{source}: no report here (write one with `uplift weekly`)")
    return WeeklyReport.from_dict(json.loads(source.read_text()))


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return to_json_ready(value)
