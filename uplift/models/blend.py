"""The blend: the mean of the bagged S-learner's and the linear S-learner's outcomes per arm.

The two learners err differently. Trees find effects that vary in steps and interactions but
need many orders per leaf to see an effect of a point; the penalised linear model pools every
order into each coefficient but sees only effects roughly linear in the signals. Their equal
mean (the classic forecast combination: equal weights need no estimate, and estimated weights
were too noisy to help at these effect sizes) keeps more of the oracle's net value than either
alone where neither is clearly better (``benchmarks/results/grid.md``, 5 seeds per cell).

The uplift of the blend is the mean of the two learners' uplifts, since uplift is a difference
of outcomes. Both members share the blend's feature encoding and fit state.
"""

from __future__ import annotations

import pandas as pd

from uplift.models.base import FitData, FloatArray
from uplift.models.learners import (
    LEARNING_RATE,
    MIN_CHILD_SAMPLES,
    N_BAGS,
    N_ESTIMATORS,
    N_JOBS,
    NUM_LEAVES,
    OutcomeLearner,
    SLearner,
)
from uplift.models.linear import LinearLearner

__all__ = ["BlendLearner", "members_of"]

#: Attributes that ``fit`` sets on a learner before ``_fit``: a member adopts its blend's.
_FIT_STATE = (
    "encoder_",
    "control_",
    "treatment_arms_",
    "binary_outcome_",
    "n_features_in_",
    "feature_names_in_",
)


class BlendLearner(OutcomeLearner):
    """E[y | arm, x] as the equal mean of :class:`SLearner` and :class:`LinearLearner`.

    The parameters are those of the two members (see each); ``random_state`` seeds the
    S-learner's bags.

    Attributes
    ----------
    trees_ : SLearner
    linear_ : LinearLearner
        The fitted members.
    """

    def __init__(
        self,
        *,
        n_estimators: int = N_ESTIMATORS,
        learning_rate: float = LEARNING_RATE,
        num_leaves: int = NUM_LEAVES,
        min_child_samples: int = MIN_CHILD_SAMPLES,
        n_bags: int = N_BAGS,
        n_jobs: int = N_JOBS,
        random_state: int = 0,
        C: float | None = None,
        interaction_scale: float | None = None,
        adaptation: float | None = None,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            n_jobs=n_jobs,
            random_state=random_state,
        )
        self.n_bags = n_bags
        self.C = C
        self.interaction_scale = interaction_scale
        self.adaptation = adaptation

    def _check_params(self) -> None:
        for member in members_of(self):
            member._check_params()

    def _fit(self, data: FitData) -> None:
        self.trees_, self.linear_ = members_of(self)
        self.trees_._fit(data)
        self.linear_._fit(data)

    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray:
        return (self.trees_._outcome_matrix(X) + self.linear_._outcome_matrix(X)) / 2


def members_of(blend: BlendLearner) -> tuple[SLearner, LinearLearner]:
    """Unfitted members with the blend's parameters and, when it has one, its fit state."""
    trees = SLearner(
        n_estimators=blend.n_estimators,
        learning_rate=blend.learning_rate,
        num_leaves=blend.num_leaves,
        min_child_samples=blend.min_child_samples,
        n_bags=blend.n_bags,
        n_jobs=blend.n_jobs,
        random_state=blend.random_state,
    )
    linear = LinearLearner(
        C=blend.C, interaction_scale=blend.interaction_scale, adaptation=blend.adaptation
    )
    for member in (trees, linear):
        for name in _FIT_STATE:
            if hasattr(blend, name):
                setattr(member, name, getattr(blend, name))
    return trees, linear
