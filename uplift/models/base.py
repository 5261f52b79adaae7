"""The contract every uplift model follows, its input checks and the shared feature encoding.

``fit(X, y, *, arm, propensity=None, control="control")`` and ``predict(X)``, which returns a
DataFrame of orders x treatment arms (columns in sorted arm order, index of ``X``, float64).
The target ``y`` is ``retained`` (0/1) or a continuous outcome such as revenue; either way the
prediction is E[y | arm, x] - E[y | control, x], so uplift > 0 is good.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, NotFittedError, SchemaError, describe_rows

__all__ = [
    "BaseUpliftModel",
    "FeatureEncoder",
    "FitData",
    "FloatArray",
    "check_positive_float",
    "check_positive_int",
]

FloatArray = NDArray[np.float64]


class FeatureEncoder:
    """Turns a feature frame into numbers the same way at fit and at predict time.

    Numeric and boolean columns become float64. Every other column becomes a pandas
    ``category`` with the categories seen in fit (an unseen level becomes missing), so that
    LightGBM splits on it natively; :meth:`to_numpy` gives the category codes instead, and
    fills missing numbers for the libraries that refuse them.
    """

    def __init__(self) -> None:
        self.columns: tuple[str, ...] = ()
        self.categories: dict[str, pd.Index] = {}
        self.medians: dict[str, float] = {}
        self.with_missing: tuple[str, ...] = ()

    def fit(self, X: pd.DataFrame) -> Self:
        """Learn the columns and the levels of the categorical ones."""
        self.columns = tuple(str(c) for c in X.columns)
        self.categories = {
            str(name): pd.Index(sorted(X[name].dropna().astype(str).unique()))
            for name in X.columns
            if not _is_numeric(X[name])
        }
        numeric = [str(c) for c in X.columns if str(c) not in self.categories]
        values = {name: X[name].astype(np.float64) for name in numeric}
        self.medians = {n: float(v.median()) if v.notna().any() else 0.0 for n, v in values.items()}
        self.with_missing = tuple(n for n, v in values.items() if v.isna().any())
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Encoded copy of ``X`` (the input is never modified)."""
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise SchemaError(
                f"feature column(s) {', '.join(missing)} missing; the model was fitted on "
                f"{', '.join(self.columns)}"
            )
        encoded: dict[str, Any] = {}
        for name in self.columns:
            column = X[name]
            if name in self.categories:
                levels = self.categories[name]
                codes = _category_codes(column, levels)
                encoded[name] = pd.Categorical.from_codes(codes, categories=levels)
            else:
                encoded[name] = _as_float(column, name)
        return pd.DataFrame(encoded, index=X.index)

    def to_numpy(self, encoded: pd.DataFrame) -> FloatArray:
        """Numeric matrix for libraries without categorical or missing-value support.

        Categories become their codes (missing is -1). A missing number becomes the column's
        median in fit, and every column that had missing numbers in fit gains an indicator
        column after the others, so that missingness itself can be learned.
        """
        medians = getattr(self, "medians", {})
        columns = [
            encoded[c].cat.codes.to_numpy(np.float64)
            if isinstance(encoded[c].dtype, pd.CategoricalDtype)
            else encoded[c].fillna(medians.get(c, 0.0)).to_numpy(np.float64)
            for c in encoded.columns
        ]
        columns += [
            encoded[c].isna().to_numpy(np.float64) for c in getattr(self, "with_missing", ())
        ]
        return np.column_stack(columns) if columns else np.empty((len(encoded), 0))


def _category_codes(column: pd.Series, levels: pd.Index) -> NDArray[np.int64]:
    """Position of each value's text in ``levels``; unseen levels and missing values get -1."""
    if isinstance(column.dtype, pd.StringDtype):
        # Strings (pandas' default, held by arrow): arrow matches them 10x faster than an index.
        values = pa.array(column)
        found = pc.index_in(values, value_set=pa.array(list(levels), type=values.type))
        return np.asarray(pc.fill_null(found, -1), dtype=np.int64)
    return np.asarray(levels.get_indexer(pd.Index(column.astype("string"))), dtype=np.int64)


def _is_numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _as_float(column: pd.Series, name: str) -> pd.Series:
    if not _is_numeric(column):
        raise SchemaError(
            f"feature column {name} was numeric when the model was fitted but holds "
            f"{column.dtype} now; convert it back to numbers"
        )
    return column.astype(np.float64)


@dataclass(frozen=True)
class FitData:
    """Validated training data, encoded once and shared by every fitting step.

    ``arm_code`` is 0 for control and ``1 + i`` for ``treatment_arms[i]``; ``propensity`` is
    the probability with which each row's logged arm was chosen.
    """

    X: pd.DataFrame
    y: FloatArray
    arm_code: NDArray[np.int64]
    propensity: FloatArray
    treatment_arms: tuple[str, ...]
    binary: bool

    @property
    def n_arms(self) -> int:
        """Arms including control."""
        return 1 + len(self.treatment_arms)


class BaseUpliftModel:
    """Base of every uplift learner: checks inputs, encodes features, frames the output.

    Subclasses implement ``_fit(data)`` and ``_predict_uplift(X_encoded) -> (n, k) array``
    with one column per treatment arm in ``treatment_arms_`` order. Like a scikit-learn
    estimator, a learner's constructor only stores its keyword arguments, which
    :meth:`get_params` and :meth:`set_params` read and change (so ``sklearn.base.clone``
    copies a learner); the class does not derive from scikit-learn's, whose import (a second
    with SciPy's statistics) every prediction would otherwise pay.

    Attributes
    ----------
    control_ : str
        The control arm given to ``fit``.
    treatment_arms_ : tuple of str
        The other arms, sorted; the columns of ``predict``.
    binary_outcome_ : bool
        Whether ``y`` was 0/1 (outcome models are then classifiers).
    encoder_ : FeatureEncoder
        The feature encoding learned in ``fit``.
    """

    @classmethod
    def _parameters(cls) -> dict[str, inspect.Parameter]:
        """The constructor's arguments by name (each is stored under its own name)."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        found = inspect.signature(cls.__init__).parameters.values()
        return {
            p.name: p
            for p in sorted(found, key=lambda p: p.name)
            if p.kind in named and p.name != "self"
        }

    @classmethod
    def _param_names(cls) -> list[str]:
        return list(cls._parameters())

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments by name (scikit-learn's contract; ``deep`` is accepted
        for it: no argument is itself an estimator)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change constructor arguments; ConfigError for a name the constructor does not take."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no parameter {', '.join(unknown)}; "
                f"its parameters: {', '.join(self._param_names())}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """The class and the arguments that differ from the defaults, as scikit-learn shows it."""
        defaults = {name: p.default for name, p in self._parameters().items()}
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series | NDArray[Any],
        *,
        arm: pd.Series | NDArray[Any],
        propensity: pd.Series | NDArray[Any] | None = None,
        control: str = "control",
    ) -> Self:
        """Fit the model on a log's features, outcome, logged arm and logged propensity.

        When ``propensity`` is None every row gets its arm's share of the log (uniform
        randomisation); pass the log's propensities for a log written by a targeting policy.
        """
        self._check_params()
        data = self._check_fit_inputs(X, y, arm, propensity, control)
        self._fit(data)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Uplift per order (rows, index of ``X``) and treatment arm (columns), float64."""
        encoded = self._encode(X)
        if len(X) == 0:
            values = np.empty((0, len(self.treatment_arms_)))
        else:
            values = np.asarray(self._predict_uplift(encoded), dtype=np.float64)
        return pd.DataFrame(values, index=X.index, columns=list(self.treatment_arms_))

    def _check_params(self) -> None:
        """Validate constructor arguments (sklearn: never in ``__init__``)."""

    @abstractmethod
    def _fit(self, data: FitData) -> None: ...

    @abstractmethod
    def _predict_uplift(self, X: pd.DataFrame) -> FloatArray: ...

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """Check that the model is fitted and ``X`` a frame, then encode it as in fit."""
        if not hasattr(self, "treatment_arms_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X, y, arm=...) first"
            )
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(f"X must be a pandas DataFrame of features; got {type(X).__name__}")
        return self.encoder_.transform(X)

    def _check_fit_inputs(
        self,
        X: pd.DataFrame,
        y: pd.Series | NDArray[Any],
        arm: pd.Series | NDArray[Any],
        propensity: pd.Series | NDArray[Any] | None,
        control: str,
    ) -> FitData:
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(f"X must be a pandas DataFrame of features; got {type(X).__name__}")
        n = len(X)
        y_values = _numeric_vector(y, "y", n)
        if np.shape(arm) != (n,):
            raise SchemaError(f"arm must have one label per row of X ({n}); got {np.shape(arm)}")
        # Factorised once: sorting a million labels as strings costs a second.
        found, levels = pd.factorize(pd.Series(np.asarray(arm, dtype=object)).astype(str))
        labels = sorted(str(level) for level in levels)
        if control not in labels:
            raise SchemaError(
                f"control arm {control!r} not found in arm; arms present: {', '.join(labels)}"
            )
        treatment_arms = tuple(str(a) for a in labels if a != control)
        if not treatment_arms:
            raise SchemaError(f"arm holds only the control arm {control!r}; nothing to compare")
        order = [control, *treatment_arms]
        codes = np.array([order.index(str(level)) for level in levels], dtype=np.int64)[found]
        p = _propensity(propensity, codes, n)
        self.encoder_ = FeatureEncoder().fit(X)
        self.control_ = control
        self.treatment_arms_ = treatment_arms
        self.binary_outcome_ = bool(np.isin(y_values, (0.0, 1.0)).all())
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(self.encoder_.columns, dtype=object)
        encoded = self.encoder_.transform(X)
        return FitData(encoded, y_values, codes, p, treatment_arms, self.binary_outcome_)


def _numeric_vector(values: pd.Series | NDArray[Any], name: str, n: int) -> FloatArray:
    array = np.asarray(values)
    if array.shape != (n,):
        raise SchemaError(f"{name} must have one value per row of X ({n}); got {array.shape}")
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError):
        raise SchemaError(f"{name} must be numeric; got dtype {array.dtype}") from None
    bad = ~np.isfinite(numeric)
    if bad.any():
        raise SchemaError(f"{name} must be finite; missing or infinite in {_rows(bad)}")
    return numeric


def _propensity(
    propensity: pd.Series | NDArray[Any] | None, codes: NDArray[np.int64], n: int
) -> FloatArray:
    if propensity is None:
        shares = np.bincount(codes) / n
        return np.asarray(shares[codes], dtype=np.float64)
    p = _numeric_vector(propensity, "propensity", n)
    bad = (p <= 0) | (p > 1)
    if bad.any():
        raise SchemaError(f"propensity must lie in (0, 1]; outside it in {_rows(bad)}")
    return p


def _rows(mask: NDArray[np.bool_]) -> str:
    return describe_rows(np.flatnonzero(mask) + 1)


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")


def check_positive_float(name: str, value: object, *, zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (>= 0 with ``zero``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.floating | np.integer)
        or not np.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise ConfigError(f"{name} must be a number {'>=' if zero else '>'} 0; got {value!r}")
