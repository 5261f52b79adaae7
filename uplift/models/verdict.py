"""The verdict on a model's policy in one sentence, and its calibration in plain words.

An :class:`~uplift.models.evaluate.Evaluation` holds many numbers; a reader first wants one
answer: is the model's policy worth using? :class:`PolicyVerdict` takes the doubly robust (dr)
figures of the evaluation: the policy's value per order, and its paired differences (per-order
differences of contributions on the same orders, see
:class:`~uplift.experiment.offpolicy.PolicyComparison`) to treat-none (control for every order)
and to the best single arm (the same arm for every order). Each difference is "clearly better"
when its 95% interval is above 0, "clearly below" when it is below 0, and "level" when it holds
0. :func:`verdict_sentence` says all that in one sentence, in the project's words and currency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from uplift.exceptions import SchemaError
from uplift.models.contest import SINGLE_ARM, TREAT_NONE

__all__ = [
    "MODEL_POLICY",
    "STANDING_WORDS",
    "PolicyContrast",
    "PolicyVerdict",
    "Standing",
    "calibration_sentence",
    "verdict_sentence",
]

#: The name of the model's policy in an evaluation's tables.
MODEL_POLICY = "model"
#: The estimator every figure of the verdict comes from.
ESTIMATOR = "dr"
#: The policy outcome whose values are money (revenue, net of arm costs).
MONEY_OUTCOME = "revenue"
#: What the values count when no words are given.
DEFAULT_WORDS = {"retained": "retained orders", "revenue": "revenue"}

Standing = Literal["better", "level", "below"]
#: How the sentence says each standing.
STANDING_WORDS: dict[Standing, str] = {
    "better": "clearly better",
    "level": "level",
    "below": "clearly below",
}


class _Evaluated(Protocol):
    """What the verdict reads of an :class:`~uplift.models.evaluate.Evaluation`."""

    @property
    def policy_outcome(self) -> str: ...

    @property
    def policies(self) -> pd.DataFrame: ...

    @property
    def versus_best_arm(self) -> pd.DataFrame: ...

    @property
    def best_single_arm(self) -> str: ...

    @property
    def costs(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class PolicyContrast:
    """The model's policy minus one reference policy, per order, paired on the same orders.

    ``reference`` is the reference policy's name (``treat_none`` or ``treat_all_<arm>``);
    ``diff``, ``diff_se``, ``ci_lower`` and ``ci_upper`` are the difference, its standard error
    and its normal 95% interval.
    """

    reference: str
    diff: float
    diff_se: float
    ci_lower: float
    ci_upper: float

    @property
    def standing(self) -> Standing:
        """``better`` (interval above 0), ``below`` (below 0) or ``level`` (holds 0, or none)."""
        if self.ci_lower > 0:
            return "better"
        if self.ci_upper < 0:
            return "below"
        return "level"

    def to_dict(self) -> dict[str, Any]:
        """The numbers and the standing."""
        return {
            "reference": self.reference,
            "diff": self.diff,
            "diff_se": self.diff_se,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "standing": self.standing,
        }


@dataclass(frozen=True)
class PolicyVerdict:
    """The model's policy against treat-none and against the best single arm (doubly robust).

    Attributes
    ----------
    policy_outcome : str
        What the values measure: ``revenue`` (money, net of ``costs``) or ``retained`` (a
        retention rate: retained orders per order).
    net_of_costs : bool
        Whether arm costs were subtracted (some arm costs more than 0).
    value, value_se, ci_lower, ci_upper : float
        The model policy's value per order, its standard error and 95% interval.
    versus_none : PolicyContrast
        The model's policy minus treating no order.
    best_arm : str
        The arm that, given to every order, is worth most (``best_single_arm`` without its
        ``treat_all_`` prefix).
    versus_best_arm : PolicyContrast
        The model's policy minus giving every order ``best_arm``.
    estimator : str
        ``dr``: every figure is the doubly robust estimate.
    """

    policy_outcome: str
    net_of_costs: bool
    value: float
    value_se: float
    ci_lower: float
    ci_upper: float
    versus_none: PolicyContrast
    best_arm: str
    versus_best_arm: PolicyContrast
    estimator: str = ESTIMATOR

    @property
    def money(self) -> bool:
        """Whether the values are money (and so take a currency)."""
        return self.policy_outcome == MONEY_OUTCOME

    @classmethod
    def from_evaluation(cls, evaluation: _Evaluated) -> PolicyVerdict:
        """The dr rows of ``evaluation.policies`` (model against treat-none) and of
        ``evaluation.versus_best_arm``."""
        policies = evaluation.policies
        rows = policies[(policies["policy"] == MODEL_POLICY) & (policies["estimator"] == ESTIMATOR)]
        versus = evaluation.versus_best_arm
        best = versus[versus["estimator"] == ESTIMATOR]
        if len(rows) != 1 or len(best) != 1:
            raise SchemaError(
                f"the evaluation needs one {ESTIMATOR!r} row for policy {MODEL_POLICY!r} in "
                f"its policies and one in versus_best_arm; got {len(rows)} and {len(best)}"
            )
        model, against_best = rows.iloc[0], best.iloc[0]
        arm = evaluation.best_single_arm
        return cls(
            policy_outcome=evaluation.policy_outcome,
            net_of_costs=_costs_apply(evaluation.costs),
            value=float(model["value"]),
            value_se=float(model["se"]),
            ci_lower=float(model["ci_lower"]),
            ci_upper=float(model["ci_upper"]),
            versus_none=_contrast(TREAT_NONE, model),
            best_arm=arm.removeprefix(SINGLE_ARM),
            versus_best_arm=_contrast(arm, against_best),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every number, for ``--json``: the contrasts nested with their standings."""
        return {
            "estimator": self.estimator,
            "policy_outcome": self.policy_outcome,
            "net_of_costs": self.net_of_costs,
            "value": self.value,
            "value_se": self.value_se,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "versus_treat_none": self.versus_none.to_dict(),
            "best_arm": self.best_arm,
            "versus_best_arm": self.versus_best_arm.to_dict(),
        }


def _costs_apply(costs: Mapping[str, float]) -> bool:
    return any(float(cost) != 0 for cost in costs.values())


def _contrast(reference: str, row: pd.Series) -> PolicyContrast:
    return PolicyContrast(
        reference=reference,
        diff=float(row["diff"]),
        diff_se=float(row["diff_se"]),
        ci_lower=float(row["diff_ci_lower"]),
        ci_upper=float(row["diff_ci_upper"]),
    )


def verdict_sentence(
    result: PolicyVerdict | _Evaluated,
    *,
    outcome_words: str | None = None,
    currency: str = "",
) -> str:
    """One sentence: the model policy's value per order and how it stands against the two
    reference policies, with the paired differences and their 95% intervals.

    Parameters
    ----------
    result : PolicyVerdict or Evaluation
        The verdict, or the evaluation to take it from.
    outcome_words : str, optional
        What the values count, e.g. "kept orders" or "visits" (default "retained orders" for a
        retention outcome, "revenue" for money).
    currency : str
        Put before money amounts (e.g. "EUR"), only when the values are money.

    Examples
    --------
    "The model's policy is worth EUR 107.49 of revenue per order net of costs: EUR +1.29 (95% CI
    -0.20 to +2.78) over treating no one, level; EUR -0.39 (95% CI -1.91 to +1.13) over giving
    everyone payment rescue, level."
    """
    verdict = result if isinstance(result, PolicyVerdict) else PolicyVerdict.from_evaluation(result)
    decimals = _decimals(verdict)
    # Money is money whatever the outcome is called; the outcome's words are for counts.
    given = None if verdict.money else outcome_words
    words = given or DEFAULT_WORDS.get(verdict.policy_outcome, verdict.policy_outcome)
    prefix = f"{currency} " if verdict.money and currency else ""

    def amount(x: float, sign: str = "") -> str:
        return f"{prefix}{x:{sign},.{decimals}f}"

    if verdict.money:
        head = f"{amount(verdict.value)} of {words} per order"
        if verdict.net_of_costs:
            head += " net of costs"
        unit = ""
    else:
        head = f"{amount(verdict.value)} {words} per order"
        unit = f" {words} per order"

    def part(contrast: PolicyContrast, against: str) -> str:
        interval = (
            f"95% CI {contrast.ci_lower:+,.{decimals}f} to {contrast.ci_upper:+,.{decimals}f}"
        )
        return (
            f"{amount(contrast.diff, '+')}{unit} ({interval}) over {against}, "
            f"{STANDING_WORDS[contrast.standing]}"
        )

    arm = verdict.best_arm.replace("_", " ")
    return (
        f"The model's policy is worth {head}: "
        f"{part(verdict.versus_none, 'treating no one')}; "
        f"{part(verdict.versus_best_arm, f'giving everyone {arm}')}."
    )


def _decimals(verdict: PolicyVerdict) -> int:
    """Enough decimals to show the narrower interval's width with two digits.

    At least 2 for money (cents), 3 otherwise, at most 6; 3 when no interval is finite.
    """
    widths = [(c.ci_upper - c.ci_lower) / 2 for c in (verdict.versus_none, verdict.versus_best_arm)]
    finite = [w for w in widths if math.isfinite(w) and w > 0]
    if not finite:
        return 3
    wanted = 1 - math.floor(math.log10(min(finite)))
    return min(max(wanted, 2 if verdict.money else 3), 6)


def calibration_sentence(summary: pd.DataFrame) -> str:
    """What coverage and slope mean, what good values are, and the figures of ``summary``.

    ``summary`` is an evaluation's ``calibration_summary``: one row per arm with ``coverage``
    (share of deciles whose 95% interval of measured uplift holds the predicted uplift) and
    ``slope`` (of measured on predicted uplift across deciles).
    """
    coverage = _span(summary["coverage"], percent=True)
    slope = _span(summary["slope"], percent=False)
    arms = len(summary)
    where = f"across the {arms} arms" if arms > 1 else "for the arm"
    return (
        "Coverage is the share of deciles whose 95% interval of measured uplift holds the "
        "predicted uplift (near 95% is good), and slope is how measured uplift rises with "
        "predicted uplift across deciles (near 1 is good; below 1 means the predictions are "
        f"too spread out, near 0 or below that they do not rank): here coverage is {coverage} "
        f"and slope {slope} {where}."
    )


def _span(values: pd.Series, *, percent: bool) -> str:
    """``a`` or ``a to b`` over the finite values; ``not measurable`` when there are none."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return "not measurable"

    def show(x: float) -> str:
        return f"{x:.0%}" if percent else f"{x:.2f}"

    low, high = show(float(finite.min())), show(float(finite.max()))
    return low if low == high else f"{low} to {high}"
