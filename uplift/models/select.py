"""Choosing a learner by honest validation: the value of the policy each candidate implies.

Every candidate is fitted on one part of the log and scored on orders it has not seen: the
latest quarter of the log by ``assigned_at`` when the log has decision times (a model is used
on later orders than it learned from), otherwise two-fold cross-fitting. Its policy gives each
held-out order the arm of highest net value (revenue uplift - cost; control when none is
positive), and that policy is valued by the doubly robust estimator with the log's own
propensities (:func:`~uplift.experiment.offpolicy.compare_policies`). The highest value wins;
candidates
whose paired difference to the best is within one standard error of it count as tied, and
among them the highest mean Qini coefficient wins. (With the 95% interval instead, a few
thousand held-out orders tie nearly every candidate and Qini, which ignores value and costs,
would decide almost always.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.experiment.metrics import uplift_metrics_by_arm
from uplift.models.catalog import t_learner
from uplift.models.contest import compare_models
from uplift.models.effects import Effects, Outcome, concat_effects
from uplift.models.uplift_model import Selection, fit_models, model_inputs

__all__ = ["select_learner"]

#: Selection looks at no more orders than this (drawn at random): the ranking of candidates is
#: settled long before a million orders, and the chosen learner is refitted on the whole log.
MAX_SELECTION_ORDERS = 200_000
#: Share of the log, by decision time, that a time-based split holds out.
VALIDATION_SHARE = 0.25


def select_learner(
    log: ExperimentLog,
    candidates: tuple[str, ...],
    *,
    costs: Mapping[str, float],
    seed: int,
    progress: Callable[[str], None],
) -> Selection:
    """Fit every candidate on held-in orders and score its policy on held-out ones."""
    sample = _sample(log, seed)
    method, folds = _folds(sample, seed)
    outcome: Outcome = "revenue" if sample.has_revenue else "retained"
    effects: dict[str, list[Effects]] = {name: [] for name in candidates}
    seconds = dict.fromkeys(candidates, 0.0)
    mu_parts = []
    for train, held_out in folds:
        train_log, test_log = sample.subset(train), sample.subset(held_out)
        mu_parts.append(_outcome_model(train_log, outcome, seed, test_log))
        for name in candidates:
            progress(f"validating {name} on {int(held_out.sum()):,} held-out orders ({method})")
            start = time.perf_counter()
            model = fit_models(train_log, name, seed).model()
            seconds[name] += time.perf_counter() - start
            effects[name].append(model.predict_effects(test_log.frame))
    scored = pd.concat([sample.frame[held_out] for _, held_out in folds], ignore_index=True)
    mu = pd.concat(mu_parts, ignore_index=True)
    effect = {name: concat_effects(parts) for name, parts in effects.items()}
    scores = score_candidates(scored, effect, mu, costs, outcome)
    scores["fit_seconds"] = scores["learner"].map(seconds)
    chosen = str(scores.loc[scores["chosen"], "learner"].iloc[0])
    return Selection(chosen, method, outcome, len(scored), scores)


def _sample(log: ExperimentLog, seed: int) -> ExperimentLog:
    if len(log) <= MAX_SELECTION_ORDERS:
        return log
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(log), dtype=bool)
    keep[rng.choice(len(log), MAX_SELECTION_ORDERS, replace=False)] = True
    return log.subset(keep)


def _folds(
    log: ExperimentLog, seed: int
) -> tuple[str, list[tuple[NDArray[np.bool_], NDArray[np.bool_]]]]:
    """Train / held-out masks: by time when possible, else two random folds."""
    arms = log.frame["arm"].to_numpy()
    if log.has_assigned_at:
        at = log.frame["assigned_at"]
        held_out = (at > at.quantile(1 - VALIDATION_SHARE)).to_numpy()
        if _every_arm_in(arms, held_out) and _every_arm_in(arms, ~held_out):
            return "time_split", [(~held_out, held_out)]
    fold = np.random.default_rng(seed).permutation(len(log)) % 2 == 0
    if not (_every_arm_in(arms, fold) and _every_arm_in(arms, ~fold)):
        raise SchemaError(
            f"{log.source}: some arm has too few orders to validate learners on held-out "
            "orders; name a learner with --learner instead of auto"
        )
    return "cross_fit", [(~fold, fold), (fold, ~fold)]


def _every_arm_in(arms: NDArray[np.object_], mask: NDArray[np.bool_]) -> bool:
    return set(np.unique(arms[mask])) == set(np.unique(arms))


def _outcome_model(
    train: ExperimentLog, outcome: str, seed: int, test: ExperimentLog
) -> pd.DataFrame:
    """The doubly robust estimator's outcome model: the same for every candidate."""
    inputs = list(model_inputs(train))
    model = t_learner(seed)
    model.fit(
        train.frame[inputs],
        train.frame[outcome],
        arm=train.frame["arm"],
        propensity=train.frame["propensity"],
        control=train.control,
    )
    return model.predict_outcomes(test.frame[inputs]).reset_index(drop=True)


def score_candidates(
    log: pd.DataFrame,
    effects: Mapping[str, Effects],
    mu: pd.DataFrame,
    costs: Mapping[str, float],
    outcome: Outcome,
) -> pd.DataFrame:
    """Doubly robust value and Qini of every candidate's policy on held-out ``log`` rows."""
    comparison = compare_models(log, effects, outcome=outcome, mu=mu, costs=costs, baselines=False)
    # Values first, then differences paired against the best (their SE is what ties use).
    paired = comparison.versus(comparison.best(comparison.policies))
    control = next(iter(effects.values())).control
    qini = {
        name: float(
            uplift_metrics_by_arm(
                e.uplift(outcome).set_axis(log.index), log, outcome=outcome, control=control
            )["qini_coefficient"].mean()
        )
        for name, e in effects.items()
    }
    scores = pd.DataFrame(
        {
            "learner": paired["policy"],
            "policy_value": paired["value"],
            "se": paired["se"],
            "ci_lower": paired["ci_lower"],
            "ci_upper": paired["ci_upper"],
            "diff_to_best": paired["diff"],
            "diff_se": paired["diff_se"],
            "diff_ci_lower": paired["diff_ci_lower"],
            "diff_ci_upper": paired["diff_ci_upper"],
            "qini": paired["policy"].map(qini),
            "treated_share": paired["treated_share"],
        }
    )
    scores["tied"] = scores["diff_to_best"] >= -scores["diff_se"].fillna(0.0)
    winner = scores.loc[scores["tied"]].sort_values(["qini", "policy_value"]).index[-1]
    scores["chosen"] = scores.index == winner
    return scores
