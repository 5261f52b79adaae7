"""How good a fitted model is on a log: ranking, calibration and the value of its policy.

Per treatment arm: Qini coefficient, AUUC and uplift at the top 10/20/30% (each arm's rows
against control's, weighted by 1 / logged propensity), and calibration by decile of predicted
uplift (predicted against measured uplift with 95% intervals). For the whole policy (per order,
the arm of highest net value; control when none is positive): IPW, self-normalised IPW and
doubly robust values with intervals, against treating no order and against the best single arm
for every order, the differences paired on the same orders (per-order differences of the two
policies' contributions, so their intervals are those of the paired difference), summed up in
one verdict (:mod:`uplift.models.verdict`). And what the model says about the
orders (:mod:`uplift.models.diagnose`): where each arm helps most and where it harms, and the
rules of a shallow policy tree that explain its choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.experiment.metrics import (
    QINI_RESAMPLES,
    calibration_by_bucket,
    uplift_metrics_by_arm,
)
from uplift.experiment.offpolicy import DEFAULT_ESTIMATORS
from uplift.models.contest import TREAT_NONE, best_single_arm, compare_models
from uplift.models.diagnose import explain_arms, segment_table
from uplift.models.effects import Effects, Outcome
from uplift.models.training import data_hash
from uplift.models.uplift_model import UpliftModel
from uplift.models.verdict import MODEL_POLICY, PolicyVerdict

__all__ = ["Evaluation", "evaluate_model"]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A model's scores on one log (raw numbers; rendering is the caller's).

    Attributes
    ----------
    outcome : str
        ``retained`` or ``revenue``: what the ranking metrics and calibration score.
    policy_outcome : str
        What the policy values measure (revenue net of ``costs`` when the log has revenue).
    by_arm : DataFrame
        :func:`~uplift.experiment.metrics.uplift_metrics_by_arm`: ``arm``, ``n_treated``,
        ``n_control``, ``ate``, ``auuc``, ``qini_coefficient`` with its 95% bootstrap interval
        (``qini_ci_lower``, ``qini_ci_upper``), ``uplift_at_10`` / ``_20`` / ``_30``.
    calibration : DataFrame
        One row per arm and bucket: ``arm`` plus the columns of
        :class:`uplift.experiment.metrics.Calibration` ``.table``.
    calibration_summary : DataFrame
        Per arm: ``coverage``, ``slope``, ``slope_se``, ``intercept``, ``chi2``, ``chi2_df``,
        ``chi2_pvalue``.
    policies : DataFrame
        :func:`~uplift.experiment.offpolicy.compare_policies` against ``treat_none`` for the
        model's policy, treat-none and every single arm, estimators ``ipw``, ``snipw``, ``dr``.
    versus_best_arm : DataFrame
        The model's policy against ``best_single_arm``, per estimator: ``estimator``,
        ``diff``, ``diff_se``, ``diff_ci_lower``, ``diff_ci_upper``.
    best_single_arm : str
        The ``treat_all_<arm>`` policy of highest doubly robust value.
    costs : dict
        Cost per use of each arm, as applied.
    in_sample : bool
        Whether the log is the one the model was trained on (its scores are then optimistic).
    segments : DataFrame
        :func:`uplift.models.diagnose.segment_table` of the predicted uplift (``outcome``):
        per arm, the segments where it helps most and where it harms (or, with a ``note``,
        that it does so in no segment).
    rules : DataFrame
        ``ArmReasons.rules`` of :func:`uplift.models.diagnose.explain_arms` fitted to the
        model's policy: ``leaf, arm, rule, orders, share, fidelity, mean_effect``.
    """

    outcome: str
    policy_outcome: str
    by_arm: pd.DataFrame
    calibration: pd.DataFrame
    calibration_summary: pd.DataFrame
    policies: pd.DataFrame
    versus_best_arm: pd.DataFrame
    best_single_arm: str
    costs: dict[str, float]
    in_sample: bool
    segments: pd.DataFrame
    rules: pd.DataFrame

    @property
    def verdict(self) -> PolicyVerdict:
        """The model's policy against treat-none and the best single arm (dr, paired)."""
        return PolicyVerdict.from_evaluation(self)

    def to_dict(self) -> dict[str, Any]:
        """Every number, for ``--json`` and the model card."""
        return {
            "outcome": self.outcome,
            "policy_outcome": self.policy_outcome,
            "verdict": self.verdict.to_dict(),
            "by_arm": self.by_arm,
            "calibration_summary": self.calibration_summary,
            "calibration": self.calibration,
            "policies": self.policies,
            "best_single_arm": self.best_single_arm,
            "versus_best_arm": self.versus_best_arm,
            "costs": self.costs,
            "in_sample": self.in_sample,
            "segments": self.segments,
            "rules": self.rules,
        }


def evaluate_model(
    model: UpliftModel,
    log: ExperimentLog,
    *,
    costs: Mapping[str, float] | None = None,
    buckets: int = 10,
    ks: Sequence[float] = (0.1, 0.2, 0.3),
) -> Evaluation:
    """Score ``model`` on ``log``; ``costs`` default to those the model was trained with."""
    unknown = sorted(set(log.arms) - {model.control, *model.treatment_arms})
    if unknown or log.control != model.control:
        raise SchemaError(
            f"{log.source}: the log's arms {list(log.arms)} (control {log.control!r}) do not "
            f"match the model's {[model.control, *model.treatment_arms]}; evaluate on a log of "
            "the same experiment"
        )
    applied = dict(model.training.get("costs", {}) if costs is None else costs)
    effects = model.predict_effects(log.frame)
    outcome: Outcome = "retained" if effects.retained is not None else "revenue"
    uplift = effects.uplift(outcome)
    by_arm = uplift_metrics_by_arm(
        uplift, log.frame, outcome=outcome, control=log.control, ks=ks, resamples=QINI_RESAMPLES
    )
    calibration, summary = _calibration(uplift, log, outcome, buckets)
    has_value = effects.revenue is not None and log.has_revenue
    policy_outcome: Outcome = "revenue" if has_value else "retained"
    if policy_outcome == "retained":
        applied = {}  # costs are currency; they cannot be netted from a retention rate
    policies, versus, best = _policies(model, log, effects, policy_outcome, applied)
    in_sample = data_hash(log) == model.training.get("data_hash")
    value = effects.uplift(policy_outcome) - pd.Series(
        {arm: applied.get(arm, 0.0) for arm in model.treatment_arms}
    )
    return Evaluation(
        outcome,
        policy_outcome,
        by_arm,
        calibration,
        summary,
        policies,
        versus,
        best,
        applied,
        in_sample,
        segment_table(log.X, uplift),
        explain_arms(log.X, value, control=model.control).rules,
    )


def _calibration(
    uplift: pd.DataFrame, log: ExperimentLog, outcome: str, buckets: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    arms = log.frame["arm"].to_numpy()
    weights = 1.0 / log.frame["propensity"].to_numpy(np.float64)
    y = log.frame[outcome].to_numpy(np.float64)
    tables, summaries = [], []
    for arm in log.treatment_arms:
        rows = (arms == arm) | (arms == log.control)
        result = calibration_by_bucket(
            uplift[arm].to_numpy()[rows],
            y[rows],
            arms[rows] == arm,
            buckets=buckets,
            weights=weights[rows],
        )
        tables.append(result.table.assign(arm=arm))
        summaries.append(
            {
                "arm": arm,
                "coverage": result.coverage,
                "slope": result.slope,
                "slope_se": result.slope_se,
                "intercept": result.intercept,
                "chi2": result.chi2,
                "chi2_df": result.chi2_df,
                "chi2_pvalue": result.chi2_pvalue,
            }
        )
    table = pd.concat(tables, ignore_index=True)
    table = table[["arm", *[c for c in table.columns if c != "arm"]]]
    return table, pd.DataFrame(summaries)


def _policies(
    model: UpliftModel,
    log: ExperimentLog,
    effects: Effects,
    outcome: Outcome,
    costs: Mapping[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The model's policy against treat-none and every single arm, and against the best arm."""
    comparison = compare_models(
        log.frame,
        {MODEL_POLICY: effects},
        outcome=outcome,
        mu=model.predict_outcomes(log.frame, outcome),
        costs=costs,
        estimators=DEFAULT_ESTIMATORS,
    )
    best = best_single_arm(comparison)
    paired = comparison.versus(best)
    versus = paired.loc[
        paired["policy"] == MODEL_POLICY,
        ["estimator", "diff", "diff_se", "diff_ci_lower", "diff_ci_upper"],
    ].reset_index(drop=True)
    return comparison.versus(TREAT_NONE), versus, best
