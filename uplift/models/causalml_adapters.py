"""causalml's meta-learners (T, S, X, R, DR) with LightGBM base learners, behind our contract.

The adapter passes arguments by keyword, always passes the propensities of the log (causalml
would otherwise fit an ElasticNet propensity model that is slow and, for its DR-learner,
biased), uses the classifier variants for a 0/1 outcome, and returns causalml's effect matrix
(columns in sorted arm order, like ours) as the contract's DataFrame.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from uplift.models.base import FitData, FloatArray
from uplift.models.learners import VariantLearner
from uplift.models.propensity import arm_probabilities, pairwise

__all__ = ["CausalMLLearner", "quiet_third_party"]


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence the known noise of causalml, econml and sklearn inside their calls only.

    Importing causalml also switches matplotlib to its own style for the whole process; the
    rc context restores the user's style when the call returns.
    """
    import matplotlib  # noqa: PLC0415 - only causalml/econml calls need it; keeps this module light

    with warnings.catch_warnings(), matplotlib.rc_context():
        # Importing causalml imports shap, which trips matplotlib's deprecation warnings.
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings(
                "ignore", category=category, module=r"(causalml|econml|sklearn)"
            )
        warnings.filterwarnings("ignore", message=".*Co-variance matrix is underdetermined.*")
        warnings.filterwarnings("ignore", message=".*X does not have valid feature names.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"lightgbm")
        yield


class CausalMLLearner(VariantLearner):
    """A causalml meta-learner: ``kind`` is one of ``t``, ``s``, ``x``, ``r``, ``dr``.

    The X-learner weighs its two effect models by the pairwise propensity; at prediction time
    the propensities of new orders are unknown, so it uses each arm's mean training value.

    Attributes
    ----------
    model_ : causalml learner
        The fitted causalml object.
    mean_pair_propensity_ : ndarray of shape (n_treatment_arms,)
        Mean P(arm | arm or control) in training (the X-learner's weights at prediction).
    """

    KINDS = ("t", "s", "x", "r", "dr")

    def _base(self, *, classifier: bool) -> Any:
        settings: dict[str, Any] = {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "n_jobs": self.n_jobs,
            "random_state": int(self.random_state),
            "verbose": -1,
        }
        from lightgbm import (  # noqa: PLC0415 - imported by the fit that needs it, not on load
            LGBMClassifier,
            LGBMRegressor,
        )

        return LGBMClassifier(**settings) if classifier else LGBMRegressor(**settings)

    def _learner(self, binary: bool) -> Any:
        with quiet_third_party():
            from causalml.inference import meta  # noqa: PLC0415 - causalml: seconds to import, only here

        control, seed = self.control_, int(self.random_state)
        outcome, effect = self._base(classifier=binary), self._base(classifier=False)
        if self.kind == "t":
            cls = meta.BaseTClassifier if binary else meta.BaseTRegressor
            return cls(learner=outcome, control_name=control)
        if self.kind == "s":
            cls = meta.BaseSClassifier if binary else meta.BaseSRegressor
            return cls(learner=outcome, control_name=control)
        if self.kind == "x":
            if binary:
                return meta.BaseXClassifier(
                    outcome_learner=outcome, effect_learner=effect, control_name=control
                )
            return meta.BaseXRegressor(learner=effect, control_name=control)
        if self.kind == "r":
            cls = meta.BaseRClassifier if binary else meta.BaseRRegressor
            return cls(
                outcome_learner=outcome,
                effect_learner=effect,
                control_name=control,
                n_fold=2,
                random_state=seed,
            )
        if binary:
            return meta.BaseDRClassifier(
                control_outcome_learner=outcome,
                treatment_outcome_learner=self._base(classifier=True),
                treatment_effect_learner=effect,
                control_name=control,
            )
        return meta.BaseDRRegressor(learner=effect, control_name=control)

    def _p(self, pair: FloatArray) -> dict[str, FloatArray]:
        return {arm: pair[:, j] for j, arm in enumerate(self.treatment_arms_)}

    def _fit(self, data: FitData) -> None:
        probabilities = arm_probabilities(data, n_jobs=self.n_jobs, seed=int(self.random_state))
        pair = pairwise(probabilities)
        self.mean_pair_propensity_ = pair.mean(axis=0)
        arms = np.asarray((self.control_, *data.treatment_arms), dtype=object)[data.arm_code]
        self.model_ = self._learner(data.binary)
        extra: dict[str, Any] = {}
        if self.kind == "r":
            extra["verbose"] = False
        if self.kind == "dr":
            extra["seed"] = int(self.random_state)
        with quiet_third_party():
            self.model_.fit(
                X=self.encoder_.to_numpy(data.X),
                treatment=arms,
                y=data.y,
                p=self._p(pair),
                **extra,
            )

    def _predict_uplift(self, X: pd.DataFrame) -> FloatArray:
        matrix = self.encoder_.to_numpy(X)
        extra: dict[str, Any] = {}
        if self.kind == "x":
            pair = np.tile(self.mean_pair_propensity_, (len(X), 1))
            extra["p"] = self._p(pair)
        with quiet_third_party():
            effect = np.asarray(self.model_.predict(matrix, **extra), dtype=np.float64)
        groups = [str(g) for g in self.model_.t_groups]
        order = [groups.index(arm) for arm in self.treatment_arms_]
        return effect.reshape(len(X), -1)[:, order]
