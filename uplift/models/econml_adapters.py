"""econml's DRLearner and CausalForestDML with LightGBM nuisances, behind our contract.

econml estimates the propensity with a classifier on (X, W). To make it use the log's own
propensities instead, the row number travels as the only column of ``W``: the propensity
"model" looks each row's arm probabilities up by it (:func:`uplift.models.propensity.
arm_probabilities`), and the outcome model drops that column before it learns. The effect of
arm a is ``effect(X, T0=control, T1=a)``; econml's sign is ours (E[y | T1] - E[y | T0]).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.models.base import FitData, FloatArray
from uplift.models.causalml_adapters import quiet_third_party
from uplift.models.learners import VariantLearner
from uplift.models.propensity import arm_probabilities

__all__ = ["EconMLLearner"]

# The forest is the costly one (library notes: 508 s for 100k orders x 20 features): fewer
# trees than econml's default keep it usable; its leaves need enough orders of every arm.
FOREST_TREES = 100
FOREST_MIN_LEAF = 50


class LoggedPropensity:
    """A classifier stand-in returning the log's arm probabilities for the row ids it is given.

    The row id is the last column of its input (econml's ``W``).
    """

    def __init__(self, probabilities: FloatArray) -> None:
        self.probabilities = probabilities

    def fit(self, XW: NDArray[np.float64], T: NDArray[Any], **_: Any) -> Self:
        """Nothing to learn: the probabilities are the log's."""
        self.classes_ = np.arange(self.probabilities.shape[1])
        return self

    def predict_proba(self, XW: NDArray[np.float64]) -> FloatArray:
        """Arm probabilities of the rows whose ids are in the last column."""
        return self.probabilities[XW[:, -1].astype(np.int64)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """For sklearn's clone, which econml applies to every nuisance model."""
        return {"probabilities": self.probabilities}

    def set_params(self, **params: Any) -> Self:
        """For sklearn's clone."""
        self.probabilities = params["probabilities"]
        return self


class WithoutRowId:
    """Fits and predicts ``estimator`` without the row-id column at position ``id_column``."""

    def __init__(self, estimator: Any, id_column: int) -> None:
        self.estimator = estimator
        self.id_column = id_column

    def _drop(self, XWT: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.delete(XWT, self.id_column, axis=1)

    def fit(self, XWT: NDArray[np.float64], y: NDArray[Any], **kwargs: Any) -> Self:
        """Fit the wrapped estimator on every column but the row id."""
        self.estimator.fit(self._drop(XWT), y, **kwargs)
        return self

    def predict(self, XWT: NDArray[np.float64]) -> FloatArray:
        """Predict with the wrapped estimator on every column but the row id."""
        return np.asarray(self.estimator.predict(self._drop(XWT)), dtype=np.float64)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """For sklearn's clone."""
        return {"estimator": self.estimator, "id_column": self.id_column}

    def set_params(self, **params: Any) -> Self:
        """For sklearn's clone."""
        self.estimator = params.get("estimator", self.estimator)
        self.id_column = params.get("id_column", self.id_column)
        return self


class EconMLLearner(VariantLearner):
    """econml's ``DRLearner`` (``kind="dr"``) or ``CausalForestDML`` (``kind="forest"``).

    Attributes
    ----------
    model_ : econml estimator
        The fitted econml object; treatments are arm codes (0 = control).
    """

    KINDS = ("dr", "forest")

    def _regressor(self) -> Any:
        from lightgbm import LGBMRegressor  # noqa: PLC0415 - imported by the fit, not on load

        return LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            n_jobs=self.n_jobs,
            random_state=int(self.random_state),
            verbose=-1,
        )

    def _estimator(self, probabilities: FloatArray, n_features: int) -> Any:
        with quiet_third_party():
            from econml.dml import CausalForestDML  # noqa: PLC0415 - econml: seconds to import, only here
            from econml.dr import DRLearner  # noqa: PLC0415 - econml: seconds to import, only here

        propensity = LoggedPropensity(probabilities)
        outcome = WithoutRowId(self._regressor(), n_features)
        if self.kind == "dr":
            return DRLearner(
                model_propensity=propensity,
                model_regression=outcome,
                model_final=self._regressor(),
                cv=2,
                min_propensity=0.01,
                random_state=int(self.random_state),
            )
        return CausalForestDML(
            model_y=outcome,
            model_t=propensity,
            discrete_treatment=True,
            n_estimators=FOREST_TREES,
            min_samples_leaf=FOREST_MIN_LEAF,
            cv=2,
            n_jobs=self.n_jobs,
            random_state=int(self.random_state),
        )

    def _fit(self, data: FitData) -> None:
        probabilities = arm_probabilities(data, n_jobs=self.n_jobs, seed=int(self.random_state))
        X = self.encoder_.to_numpy(data.X)
        self.model_ = self._estimator(probabilities, X.shape[1])
        row_id = np.arange(len(X), dtype=np.float64)[:, None]
        with quiet_third_party():
            self.model_.fit(data.y, data.arm_code, X=X, W=row_id)

    def _predict_uplift(self, X: pd.DataFrame) -> FloatArray:
        matrix = self.encoder_.to_numpy(X)
        with quiet_third_party():
            effects = [
                np.asarray(self.model_.effect(matrix, T0=0, T1=code), dtype=np.float64).ravel()
                for code in range(1, 1 + len(self.treatment_arms_))
            ]
        return np.column_stack(effects)
