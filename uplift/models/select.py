"""Choosing a learner by honest validation: the value of the policy each candidate implies.

The log (up to :data:`MAX_SELECTION_ORDERS` of it) is cut into :data:`N_FOLDS` folds; every
candidate is fitted on all folds but one and predicts the orders of that one, so every order is
scored once, by models that never saw it. When the log has decision times the folds are
consecutive blocks of ``assigned_at``, so each is scored by a model that did not learn from its
weeks. A candidate's policy gives each order the arm of highest net value (revenue uplift -
cost; control when none is positive), and that policy is valued by the doubly robust estimator
with the log's own propensities and one cross-fitted outcome model for all candidates
(:func:`~uplift.models.contest.compare_models`), so candidates are compared paired, on the same
orders.

The first candidate is the default (``s_blend`` in
:data:`~uplift.models.catalog.DEFAULT_CANDIDATES`, the equal mean of the bagged S-learner and
the linear S-learner, the trees' uplift stretched on large logs: on the benchmark grid of
worlds, sizes and 5 seeds, ``benchmarks/results/grid.md``, it loses the least to whichever
member is truly better in a log). A blend whose members are candidates too is joined from their
fitted models (:func:`joined`), with no fit of its own. Another candidate is chosen only when it
is *clearly* better: its paired difference to the default lies above zero by
:func:`clear_margin` standard errors (the lower end of its 95% interval, Bonferroni-adjusted for
the number of alternatives: unadjusted, two alternatives at 2.5% each would let noise displace
the default in about one log in twenty). Among several clearly better, the highest value wins.
At the effect sizes of real nudges the doubly robust standard error of a policy value is larger
than the true gaps between good learners, so the highest estimate alone follows noise; requiring
clear evidence keeps the default unless the log says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.experiment.metrics import uplift_metrics_by_arm
from uplift.models.blend import BlendLearner
from uplift.models.catalog import BLEND_MEMBERS, t_learner
from uplift.models.contest import compare_models
from uplift.models.effects import Effects, Outcome, concat_effects
from uplift.models.uplift_model import FittedModels, Selection, fit_models, model_inputs

__all__ = ["N_FOLDS", "CrossFit", "cross_fit", "joined", "score_candidates", "select_learner"]

#: Selection looks at no more orders than this (drawn at random), and the chosen learner is
#: refitted on the whole log. More orders narrow the paired intervals, but every candidate is
#: fitted once per fold, and past this the folds cost more than the final fit at a million
#: orders; an unclear comparison keeps the default, which is what more orders would mostly do.
MAX_SELECTION_ORDERS = 100_000
#: Folds of the cross-fitting: each candidate is fitted this many times on selection.
N_FOLDS = 3


@dataclass(frozen=True, eq=False)
class CrossFit:
    """Every candidate's effects on held-out orders: ``frame`` holds those orders (rows of the
    scored folds, numbered from 0), ``effects`` each candidate's predictions for them by models
    that never saw them, ``mu`` the outcome model under every arm (fitted the same way),
    ``method`` ``time_folds`` or ``cross_fit``, ``seconds`` each candidate's fit time."""

    frame: pd.DataFrame
    effects: dict[str, Effects]
    mu: pd.DataFrame
    outcome: Outcome
    method: str
    seconds: dict[str, float]


def select_learner(
    log: ExperimentLog,
    candidates: tuple[str, ...],
    *,
    costs: Mapping[str, float],
    seed: int,
    progress: Callable[[str], None],
    directions: Mapping[str, int] | None = None,
) -> Selection:
    """Fit every candidate on held-in orders and score its policy on held-out ones (each with
    the known ``directions`` when it takes them)."""
    fit = cross_fit(log, candidates, seed=seed, progress=progress, directions=directions)
    scores = score_candidates(fit.frame, fit.effects, fit.mu, costs, fit.outcome)
    scores["fit_seconds"] = scores["learner"].map(fit.seconds)
    chosen = str(scores.loc[scores["chosen"], "learner"].iloc[0])
    return Selection(chosen, fit.method, fit.outcome, len(fit.frame), scores)


def cross_fit(
    log: ExperimentLog,
    candidates: tuple[str, ...],
    *,
    seed: int,
    progress: Callable[[str], None],
    directions: Mapping[str, int] | None = None,
) -> CrossFit:
    """Every candidate fitted on all folds but one, predicting that one, for every fold."""
    sample = _sample(log, seed)
    method, folds = _folds(sample, seed)
    outcome: Outcome = "revenue" if sample.has_revenue else "retained"
    effects: dict[str, list[Effects]] = {name: [] for name in candidates}
    seconds = dict.fromkeys(candidates, 0.0)
    blended = {
        name: members
        for name, members in BLEND_MEMBERS.items()
        if name in candidates and set(members) <= set(candidates)
    }
    mu_parts = []
    fitted: dict[str, FittedModels] = {}
    for k, (train, held_out) in enumerate(folds, start=1):
        train_log, test_log = sample.subset(train), sample.subset(held_out)
        mu_parts.append(_outcome_model(train_log, outcome, seed, test_log))
        for name in candidates:
            if name in blended:
                continue
            progress(
                f"validating {name} on fold {k} of {len(folds)}: "
                f"{int(held_out.sum()):,} held-out orders ({method})"
            )
            start = time.perf_counter()
            fitted[name] = fit_models(train_log, name, seed, directions)
            seconds[name] += time.perf_counter() - start
            effects[name].append(fitted[name].model().predict_effects(test_log.frame))
        # A blend is joined from its fitted members: the same numbers as its fit, no refit.
        for name, members in blended.items():
            start = time.perf_counter()
            model = joined(train_log, name, [fitted[m] for m in members]).model()
            seconds[name] += time.perf_counter() - start
            effects[name].append(model.predict_effects(test_log.frame))
    for name, members in blended.items():
        seconds[name] += sum(seconds[m] for m in members)
    return CrossFit(
        frame=pd.concat([sample.frame[held_out] for _, held_out in folds], ignore_index=True),
        effects={name: concat_effects(parts) for name, parts in effects.items()},
        mu=pd.concat(mu_parts, ignore_index=True),
        outcome=outcome,
        method=method,
        seconds=seconds,
    )


def joined(log: ExperimentLog, name: str, members: list[FittedModels]) -> FittedModels:
    """The blend ``name`` of ``log`` from its members (trees, then linear) fitted on it."""
    trees, linear = members
    X = log.frame[list(model_inputs(log))]
    arm, propensity = log.frame["arm"], log.frame["propensity"]

    def join(outcome: str) -> BlendLearner | None:
        parts = getattr(trees, outcome), getattr(linear, outcome)
        if parts[0] is None:
            return None
        return BlendLearner.joined(*parts, X, arm, propensity)

    return FittedModels(log, name, join("retained"), join("revenue"), None, None)


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
    """Train / held-out masks of :data:`N_FOLDS` folds: blocks of decision time when the log
    has them (and every arm is in every block), else a random partition."""
    arms = pd.factorize(log.frame["arm"])[0]
    if log.has_assigned_at:
        order = log.frame["assigned_at"].rank(method="first").to_numpy() - 1
        fold = (order * N_FOLDS // len(log)).astype(np.int64)
        masks = _masks(fold)
        if _every_arm_everywhere(arms, masks):
            return "time_folds", masks
    fold = np.random.default_rng(seed).permutation(len(log)) % N_FOLDS
    masks = _masks(fold)
    if not _every_arm_everywhere(arms, masks):
        raise SchemaError(
            f"{log.source}: some arm has too few orders to validate learners on held-out "
            "orders; name a learner with --learner instead of auto"
        )
    return "cross_fit", masks


def _masks(fold: NDArray[np.int64]) -> list[tuple[NDArray[np.bool_], NDArray[np.bool_]]]:
    return [(fold != k, fold == k) for k in range(N_FOLDS)]


def _every_arm_everywhere(
    arms: NDArray[np.intp], masks: list[tuple[NDArray[np.bool_], NDArray[np.bool_]]]
) -> bool:
    """Whether every arm (codes 0..k-1) has orders on both sides of every fold."""
    k = int(arms.max()) + 1
    return all(bool(np.bincount(arms[side], minlength=k).all()) for pair in masks for side in pair)


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


def clear_margin(candidates: int) -> float:
    """Standard errors by which a candidate must beat the default to be *clearly* better.

    Every alternative to the default gets a one-sided test at 2.5%, Bonferroni-adjusted for the
    number of alternatives, so that the chance that any of them displaces the default by noise
    alone stays at 2.5% (1.96 for one alternative, 2.24 for two).
    """
    return NormalDist().inv_cdf(1 - 0.025 / max(candidates - 1, 1))


def score_candidates(
    log: pd.DataFrame,
    effects: Mapping[str, Effects],
    mu: pd.DataFrame,
    costs: Mapping[str, float],
    outcome: Outcome,
) -> pd.DataFrame:
    """Doubly robust value and Qini of every candidate's policy on held-out ``log`` rows; the
    first of ``effects`` is the default, kept unless another is clearly better."""
    comparison = compare_models(log, effects, outcome=outcome, mu=mu, costs=costs, baselines=False)
    default = next(iter(effects))
    paired = comparison.versus(default)
    control = effects[default].control
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
            "diff_to_default": paired["diff"],
            "diff_se": paired["diff_se"],
            "diff_ci_lower": paired["diff_ci_lower"],
            "diff_ci_upper": paired["diff_ci_upper"],
            "qini": paired["policy"].map(qini),
            "treated_share": paired["treated_share"],
        }
    )
    scores["clearly_better"] = scores["diff_to_default"] > clear_margin(len(effects)) * scores[
        "diff_se"
    ].where(scores.index > 0)
    better = scores.loc[scores["clearly_better"], "policy_value"]
    winner = better.idxmax() if len(better) else 0
    scores["chosen"] = scores.index == winner
    return scores
