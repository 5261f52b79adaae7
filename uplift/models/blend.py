"""The blend: the mean of the bagged S-learner's and the linear S-learner's outcomes per arm.

The two learners err differently. Trees find effects that vary in steps and interactions but
need many orders per leaf to see an effect of a point; the penalised linear model pools every
order into each coefficient but sees only effects roughly linear in the signals. Their equal
mean (the classic forecast combination: equal weights need no estimate, and estimated weights
were too noisy to help at these effect sizes) keeps more of the oracle's net value than either
alone where neither is clearly better (``benchmarks/results/grid.md``, 5 seeds per cell).

The uplift of the blend is the mean of the two learners' uplifts, since uplift is a difference
of outcomes. Both members share the blend's feature encoding and fit state.

On a large log the trees' uplift is stretched before the mean: its deviation from the trees'
mean uplift per arm (over the training orders) is multiplied by ``stretch``, 1 at 20,000
orders and 2 from 200,000 (log-linearly, the size rule of the linear member's penalty). The
bagged S-learner's uplift is attenuated: an effect of a point competes for every split with the
order's risk signals, so the trees learn it late and partly. On seeds 10-14 (not the grid's), at
200,000 orders, the slope of the true uplift on the trees' predicted uplift (deviations from
each arm's mean, pooled over arms) was 1.8 / 1.5 / 1.1 in the easy world with effects scaled to
0.2 / realistic / hard, against 0.4 / 0.5 / 0.2 for the linear member; at 20,000 orders both
were noise (trees 0.1-0.3). The share of the oracle's net value kept by the blend, mean over
those seeds, stretch 1 / 1.6 / 2 / 2.5 / 3: at 200,000 orders easy-0.2 64.6 / 65.8 / 66.4 /
67.0 / 67.3, realistic 61.3 / 62.0 / 62.1 / 62.1 / 61.9, hard 39.3 / 39.9 / 40.2 / 40.5 / 40.5;
at 20,000 orders realistic 42.7 / 42.8 / 42.6 / 42.2 / 41.7, hard 32.4 / 31.5 / 30.4 / 29.0 /
27.7. Hence no stretch at 20,000 orders and 2 (where the gains level off) at 200,000.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from uplift.models.base import FitData, FloatArray, check_positive_float
from uplift.models.learners import (
    LEARNING_RATE,
    MIN_CHILD_SAMPLES,
    N_BAGS,
    N_ESTIMATORS,
    N_JOBS,
    NUM_LEAVES,
    OutcomeLearner,
    SLearner,
    inverse_propensity_weights,
)
from uplift.models.linear import LinearLearner, effective_size, size_step

__all__ = ["MAX_STRETCH", "BlendLearner", "members_of", "stretch_for"]

#: The trees' stretch from 200,000 orders (see above).
MAX_STRETCH = 2.0
# Training orders whose trees' uplift gives each arm's mean (the centre of the stretch): a mean
# of a hundred thousand orders is as good as of all, at a tenth of a million-order log's cost.
MEAN_ORDERS = 100_000
# From this many orders the linear member predicts beside the trees (in a thread); a service's
# single orders are not worth a thread.
SIDE_BY_SIDE_ORDERS = 10_000

#: Attributes that ``fit`` sets on a learner before ``_fit``: a member adopts its blend's.
_FIT_STATE = (
    "encoder_",
    "control_",
    "treatment_arms_",
    "binary_outcome_",
    "n_features_in_",
    "feature_names_in_",
)


def stretch_for(orders: float) -> float:
    """The default stretch of the trees' uplift for a log of ``orders`` rows (see above)."""
    return 1.0 + (MAX_STRETCH - 1.0) * size_step(orders)


class BlendLearner(OutcomeLearner):
    """E[y | arm, x] as the equal mean of :class:`SLearner` and :class:`LinearLearner`.

    The parameters are those of the two members (see each); ``random_state`` seeds the
    S-learner's bags; ``directions`` hold for both members. ``stretch`` multiplies the trees'
    uplift's deviation from its mean per arm before the mean; None: by the log's effective size
    (:func:`stretch_for`).

    Attributes
    ----------
    trees_ : SLearner
    linear_ : LinearLearner
        The fitted members.
    stretch_ : float
        The stretch the fit used.
    tree_uplift_ : ndarray
        The trees' mean uplift per treatment arm over the training orders (the centre of the
        stretch).
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
        stretch: float | None = None,
        directions: dict[str, int] | None = None,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            n_jobs=n_jobs,
            random_state=random_state,
            directions=directions,
        )
        self.n_bags = n_bags
        self.C = C
        self.interaction_scale = interaction_scale
        self.adaptation = adaptation
        self.stretch = stretch

    def _check_params(self) -> None:
        for member in members_of(self):
            member._check_params()
        if self.stretch is not None:
            check_positive_float("stretch", self.stretch)

    def _fit(self, data: FitData) -> None:
        self.trees_, self.linear_ = members_of(self)
        self.trees_._fit(data)
        self.linear_._fit(data)
        self._centre(data.X, inverse_propensity_weights(data.arm_code, data.propensity))

    @classmethod
    def joined(
        cls,
        trees: SLearner,
        linear: LinearLearner,
        X: pd.DataFrame,
        arm: pd.Series,
        propensity: pd.Series,
    ) -> BlendLearner:
        """The blend of members already fitted on the orders ``X`` (with their logged ``arm``
        and ``propensity``): the blend that ``fit`` gives when the members have its parameters.
        Selection scores the blend so, from the members it fits anyway."""
        params = {**trees.get_params(), **linear.get_params()}
        blend = cls(**{k: v for k, v in params.items() if k in cls._param_names()})
        for name in _FIT_STATE:
            setattr(blend, name, getattr(trees, name))
        blend.trees_, blend.linear_ = trees, linear
        arms = [blend.control_, *blend.treatment_arms_]
        codes = pd.Categorical(arm.astype(str), categories=arms).codes.astype(np.int64)
        weights = inverse_propensity_weights(codes, propensity.to_numpy(np.float64))
        blend._centre(blend.encoder_.transform(X), weights)
        return blend

    def _centre(self, X: pd.DataFrame, weights: FloatArray) -> None:
        """The stretch (by the effective size of the fit's ``weights``) and its centre, the
        trees' mean uplift over (at most MEAN_ORDERS of, evenly spaced) the encoded ``X``."""
        by_size = stretch_for(effective_size(weights))
        self.stretch_ = by_size if self.stretch is None else float(self.stretch)
        n = len(X)
        rows = np.unique(np.linspace(0, n - 1, min(n, MEAN_ORDERS)).astype(np.int64))
        trees = self.trees_._outcome_matrix(X.iloc[rows])
        self.tree_uplift_ = (trees[:, 1:] - trees[:, :1]).mean(axis=0)

    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray:
        if len(X) < SIDE_BY_SIDE_ORDERS:
            trees = self._stretched(self.trees_._outcome_matrix(X))
            return (trees + self.linear_._outcome_matrix(X)) / 2
        # The linear member predicts in a thread while the trees are evaluated: their evaluator
        # runs without the GIL, so its threads and the linear member's work share the cores.
        with ThreadPoolExecutor(1) as pool:
            linear = pool.submit(self.linear_._outcome_matrix, X)
            trees = self._stretched(self.trees_._outcome_matrix(X))
            return (trees + linear.result()) / 2

    def _stretched(self, trees: FloatArray) -> FloatArray:
        """The trees' outcomes (rows x arms, control first) with their uplift stretched."""
        if self.stretch_ != 1.0:
            uplift = trees[:, 1:] - trees[:, :1]
            stretched = self.tree_uplift_ + self.stretch_ * (uplift - self.tree_uplift_)
            trees[:, 1:] = trees[:, :1] + stretched
            if self.binary_outcome_:
                np.clip(trees[:, 1:], 0.0, 1.0, out=trees[:, 1:])  # still probabilities
        return trees


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
        directions=blend.directions,
    )
    linear = LinearLearner(
        C=blend.C,
        interaction_scale=blend.interaction_scale,
        adaptation=blend.adaptation,
        directions=blend.directions,
    )
    for member in (trees, linear):
        for name in _FIT_STATE:
            if hasattr(blend, name):
                setattr(member, name, getattr(blend, name))
    return trees, linear
