"""Models judged by the policies they imply: the one doubly robust comparison of the package.

A model's policy gives each order the arm of highest net value (control when none pays). The
policies of several models, treat-none and every single arm are valued together on one log
with one outcome model (:func:`compare_models`), so their paired differences measure the
policies, not the outcome models. Selection, evaluation and the weekly champion-against-
challenger contest (:func:`decide`) all read this one comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.experiment.metrics import Z95
from uplift.experiment.offpolicy import (
    Estimator,
    PolicyComparison,
    baseline_policies,
    value_policies,
)
from uplift.models.effects import Effects, Outcome

__all__ = ["SINGLE_ARM", "TREAT_NONE", "Verdict", "best_single_arm", "compare_models", "decide"]

TREAT_NONE = "treat_none"
SINGLE_ARM = "treat_all_"


def compare_models(
    frame: pd.DataFrame,
    effects: Mapping[str, Effects],
    *,
    outcome: Outcome,
    mu: pd.DataFrame,
    costs: Mapping[str, float],
    estimators: tuple[Estimator, ...] = ("dr",),
    baselines: bool = True,
) -> PolicyComparison:
    """Each model's policy (and, with ``baselines``, treat-none and every single arm) on ``frame``.

    ``frame`` holds the logged ``arm``, ``outcome`` and ``propensity`` of the orders the
    effects were predicted for (same rows, same order); ``mu`` is the outcome model under
    every arm. Costs are in currency, so they apply only when the outcome is revenue.
    """
    first = next(iter(effects.values()))
    applied = dict(costs) if outcome == "revenue" else {}
    policies: dict[str, NDArray[np.object_] | NDArray[np.str_]] = {
        name: e.best_arm(applied, outcome=outcome) for name, e in effects.items()
    }
    if baselines:
        policies.update(baseline_policies(first.arms, len(frame), first.control))
    return value_policies(
        frame,
        policies,
        outcome=outcome,
        mu=mu,
        costs=applied,
        estimators=estimators,
        control=first.control,
    )


def best_single_arm(comparison: PolicyComparison, estimator: Estimator = "dr") -> str:
    """The ``treat_all_<arm>`` policy of highest value."""
    singles = [p for p in comparison.policies if p.startswith(SINGLE_ARM)]
    return comparison.best(singles, estimator)


@dataclass(frozen=True)
class Verdict:
    """Champion against challenger on orders neither has seen.

    ``diff`` is the challenger's policy value minus the champion's, per order, with its paired
    standard error; ``promoted`` says whether the challenger takes over.
    """

    promoted: bool
    diff: float
    diff_se: float
    reason: str


def decide(
    comparison: PolicyComparison,
    challenger_id: str,
    champion_id: str | None,
    *,
    challenger: str = "challenger",
    champion: str = "champion",
) -> Verdict:
    """Promote the challenger when its policy earns more than the champion's (or none exists)."""
    if champion_id is None:
        reason = f"{challenger_id} is the first model; it becomes the champion."
        return Verdict(True, math.nan, math.nan, reason)
    table = comparison.versus(champion)
    row = table[(table["policy"] == challenger) & (table["estimator"] == "dr")].iloc[0]
    diff, se = float(row["diff"]), float(row["diff_se"])
    promoted = diff > 0
    lower, upper = diff - Z95 * se, diff + Z95 * se
    verdict = (
        f"{challenger_id} replaces {champion_id} as champion"
        if promoted
        else f"{champion_id} stays champion"
    )
    reason = (
        f"{verdict}: the challenger's policy earns {diff:+.3f} per order against the "
        f"champion's ({lower:+.3f} to {upper:+.3f}) on held-out orders of the week."
    )
    return Verdict(promoted, diff, se, reason)
