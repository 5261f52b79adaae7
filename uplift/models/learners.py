"""Our own learners on LightGBM: a T-learner and a doubly robust learner on logged propensities.

Both weigh the log by its propensities, so a log written by a targeting policy does not bias
them: the T-learner fits each arm's outcome with weights 1 / propensity (the arm's rows then
stand for every order), and the DR-learner builds its pseudo-outcomes with the logged
propensities instead of estimated ones (Kennedy 2023, "Towards optimal doubly robust
estimation of heterogeneous causal effects").
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, check_option
from uplift.models.base import (
    BaseUpliftModel,
    FitData,
    FloatArray,
    check_positive_float,
    check_positive_int,
)
from uplift.models.directions import monotone_constraints
from uplift.models.trees import predict_arms, predict_boosters

if TYPE_CHECKING:
    import lightgbm as lgb

    from uplift.models.trees import Booster

__all__ = [
    "ARM_FEATURE",
    "DIRECTIONS",
    "LEARNING_RATE",
    "MAX_WEIGHT",
    "MIN_CHILD_SAMPLES",
    "NUM_LEAVES",
    "N_BAGS",
    "N_ESTIMATORS",
    "N_JOBS",
    "DRLearner",
    "Fit",
    "LightGBMLearner",
    "OutcomeLearner",
    "SLearner",
    "TLearner",
    "VariantLearner",
    "check_signs",
    "dr_pseudo_outcomes",
    "fit_side_by_side",
    "fit_threads",
    "inverse_propensity_weights",
    "leaf_size",
    "lgbm_params",
    "predict_booster",
    "predict_threads",
    "quiet_lightgbm",
    "train_lgbm",
]

# LightGBM settings of every learner: shallow trees. Uplift is a small difference of two noisy
# outcome models, so shallow trees recover it better than deep ones (on the simulated order
# world at 60,000 orders the T-learner's correlation with the true uplift rose from 0.25-0.58
# with 31 leaves to 0.43-0.80 with 7). 75 trees at rate 0.1 matched 150 at 0.05 (mean
# correlation 0.535 against 0.534 at 40,000 orders) at half the cost of predicting a million
# orders, which is what bounds the trees: every order passes through every arm's trees.
N_ESTIMATORS = 75
LEARNING_RATE = 0.1
NUM_LEAVES = 7
MIN_CHILD_SAMPLES = 200
#: Bootstrap models the S-learner averages (see SLearner).
N_BAGS = 5
# One thread (the trees are the same with two: deterministic=True). Re-measured on this
# shared 2-core machine, a T-learner on 1,000,000 orders: 7.4-8.3 s with one thread against
# 4.8-5.7 s with two while other work held about one core (12 alternating fits each), but one
# fit with two threads took 37.6 s, and with both cores busy two took 20 s against 15 s. On
# 2,500 and 50,000 orders under load two threads took 2x and 10x as long: LightGBM's threads
# wait for each other at every step, so one descheduled thread stalls the fit.
N_JOBS = 1
# Boosters that a learner fits on different data (a T-learner's arms, an S-learner's bags) are
# fitted side by side, each on its N_JOBS thread, as many at a time as there are cores up to
# this: single-threaded fits never wait for each other, so a busy core holds back only its own
# booster, and every booster is the one a fit after the other gives.
MAX_FIT_THREADS = 2

#: The key of a booster's parameters that holds its columns' known directions (column -> 1 or
#: -1, see :mod:`uplift.models.directions`), until train_lgbm hands them to LightGBM.
DIRECTIONS = "directions"
#: Name of the arm column the S-learner adds to the features (cannot clash: it is no feature).
ARM_FEATURE = "__arm__"

# Prediction runs every order through every arm's trees, so it bounds a million-order scoring
# run. Our tree evaluator's threads take chunks of rows as they free up, so a busy core holds
# back only its own chunk: scoring a T-learner's 6 boosters on 1,000,000 orders took 0.9-1.0 s
# with two threads and 1.6-1.7 s with one (other work holding about one core), and 1.7-2.1 s
# against 2.4-2.8 s with both cores busy.
MAX_PREDICT_THREADS = 2
# The smallest leaf any booster may grow (see LightGBMLearner._params).
MIN_LEAF = 5
# A logged propensity below this is floored when it divides an outcome: one order logged at
# 0.001 would otherwise dominate a whole pseudo-outcome model.
MIN_PROPENSITY = 0.01
#: Cap of a training row's normalised inverse-propensity weight (see inverse_propensity_weights).
MAX_WEIGHT = 10.0


def lgbm_params(
    *,
    binary: bool,
    learning_rate: float,
    num_leaves: int,
    min_child_samples: int,
    n_jobs: int,
    seed: int,
) -> dict[str, Any]:
    """LightGBM training parameters shared by every model of the package."""
    return {
        "objective": "binary" if binary else "regression",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_child_samples,
        "num_threads": n_jobs,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def check_signs(directions: object) -> None:
    """A learner's ``directions``: None or a map of column names to 1 or -1 (ConfigError)."""
    if directions is not None and not (
        isinstance(directions, dict)
        and all(
            isinstance(k, str) and not isinstance(v, bool) and v in (-1, 1)
            for k, v in directions.items()
        )
    ):
        raise ConfigError(f"directions must map column names to 1 or -1; got {directions!r}")


def leaf_size(min_child_samples: int, n_rows: int) -> int:
    """Rows a leaf needs: ``min_child_samples``, but never more than 2% of the rows fitted on.

    A small log (IHDP has 139 treated units) then still gets splits, and an S-learner can still
    split on the arm.
    """
    return min(min_child_samples, max(MIN_LEAF, n_rows // 50))


def train_lgbm(
    params: dict[str, Any],
    X: pd.DataFrame,
    y: FloatArray,
    n_estimators: int,
    weight: FloatArray | None = None,
) -> lgb.Booster:
    """Fit one LightGBM booster; categorical columns of ``X`` are split on natively."""
    with quiet_lightgbm():
        return _train(params, X, y, n_estimators, weight)


def _train(
    params: dict[str, Any],
    X: pd.DataFrame,
    y: FloatArray,
    n_estimators: int,
    weight: FloatArray | None,
) -> lgb.Booster:
    return _boost(*_binned(params, X, y, weight), n_estimators)


def _binned(
    params: dict[str, Any], X: pd.DataFrame, y: FloatArray, weight: FloatArray | None
) -> tuple[dict[str, Any], lgb.Dataset]:
    """The booster's parameters as LightGBM takes them, and its rows binned by LightGBM (the
    rows themselves are then no longer needed)."""
    import lightgbm as lgb  # noqa: PLC0415 - a second of imports (scikit-learn, SciPy) that prediction does without

    if DIRECTIONS in params:  # the columns' known directions, as LightGBM takes them
        signs = params[DIRECTIONS]
        params = {k: v for k, v in params.items() if k != DIRECTIONS}
        params["monotone_constraints"] = monotone_constraints(list(X.columns), signs)
    # Binned with the training parameters, as lgb.train would bin it (the seed, the leaf size).
    dataset = lgb.Dataset(X, label=y, weight=weight, params={**params, "verbose": -1})
    return params, dataset.construct()


def _boost(params: dict[str, Any], dataset: lgb.Dataset, n_estimators: int) -> lgb.Booster:
    import lightgbm as lgb  # noqa: PLC0415 - see _binned

    return lgb.train(params, dataset, num_boost_round=n_estimators)


@contextlib.contextmanager
def quiet_lightgbm() -> Iterator[None]:
    # LightGBM notes when a categorical column has more levels than max_cat_to_onehot; that is
    # how it is meant to work. (Warning filters are global: set once, by the calling thread.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*categorical_feature.*", category=UserWarning)
        yield


def fit_threads() -> int:
    """Boosters fitted at a time: every core, up to ``MAX_FIT_THREADS``."""
    return min(MAX_FIT_THREADS, os.cpu_count() or 1)


#: What one booster is fitted on: params, X, y, rounds and weights, as :func:`train_lgbm` takes.
Fit = tuple[dict[str, Any], pd.DataFrame, FloatArray, int, FloatArray | None]


def fit_side_by_side(count: int, data: Callable[[int], Fit]) -> list[lgb.Booster]:
    """Boosters 0, 1, ..., ``count - 1``, booster i as :func:`train_lgbm` fits it on
    ``data(i)``, on :func:`fit_threads` threads (LightGBM releases the GIL while it fits).

    ``data(i)`` is called in the thread that fits booster i, and one booster's rows are taken
    and binned at a time: a booster's rows, and LightGBM's float copy of them while it bins
    them, are held only until they are binned (on a million orders the two copies of a bag of
    the S-learner are 340 MB), then the binned rows are fitted side by side.
    """
    binning = threading.Lock()

    def fit(i: int) -> lgb.Booster:
        with binning:
            params, X, y, n_estimators, weight = data(i)
            binned = _binned(params, X, y, weight)
            del X, y, weight
        return _boost(*binned, n_estimators)

    with quiet_lightgbm():
        if fit_threads() <= 1 or count <= 1:
            return [fit(i) for i in range(count)]
        with ThreadPoolExecutor(fit_threads()) as pool:
            return list(pool.map(fit, range(count)))


def predict_threads() -> int:
    """Threads for prediction: every core, up to ``MAX_PREDICT_THREADS``."""
    return min(MAX_PREDICT_THREADS, os.cpu_count() or 1)


def predict_booster(booster: Booster, X: pd.DataFrame) -> FloatArray:
    """A booster's predictions (equal to ``booster.predict(X)``), on :func:`predict_threads`."""
    return predict_boosters([booster], X, predict_threads())[:, 0]


def inverse_propensity_weights(arm_code: NDArray[np.int64], propensity: FloatArray) -> FloatArray:
    """1 / propensity, normalised to mean 1 within each arm (constant for a randomised log),
    capped at ``MAX_WEIGHT``.

    The outcome models are conditional on the features, so the weights only guard against
    misspecification; in a log of a near-deterministic policy with a little exploration, the
    few explored orders would otherwise carry half an arm's weight and the model would learn
    from a handful of rows.
    """
    weights = 1.0 / np.maximum(propensity, MIN_PROPENSITY)
    means = np.bincount(arm_code, weights=weights) / np.bincount(arm_code)
    return np.asarray(np.minimum(weights / means[arm_code], MAX_WEIGHT), dtype=np.float64)


def dr_pseudo_outcomes(
    y: FloatArray,
    arm_code: NDArray[np.int64],
    propensity: FloatArray,
    mu: FloatArray,
) -> FloatArray:
    """Doubly robust pseudo-outcomes, one column per treatment arm.

    ``mu`` holds out-of-fold predictions of E[y | arm, x] for every arm (column 0 = control).
    For treatment arm a: mu_a - mu_0 + (1[A=a] (y - mu_a) - 1[A=0] (y - mu_0)) / p, with p the
    logged propensity of the row's own arm; its mean given x is the uplift of a at x.
    """
    rows = np.arange(len(y))
    residual = (y - mu[rows, arm_code]) / np.maximum(propensity, MIN_PROPENSITY)
    pseudo = mu[:, 1:] - mu[:, [0]]
    treated = arm_code - 1
    is_treated = treated >= 0
    pseudo[rows[is_treated], treated[is_treated]] += residual[is_treated]
    pseudo[~is_treated, :] -= residual[~is_treated, None]
    return pseudo


class LightGBMLearner(BaseUpliftModel):
    """Shared LightGBM settings and per-arm outcome models.

    ``directions`` maps numeric inputs to 1 or -1: the outcome models are then monotone in each,
    rising or falling with it under every arm (:mod:`uplift.models.directions`).
    """

    #: The fitted boosters (LightGBM's, or a loaded model's text forms), where a learner has them.
    models_: Sequence[Booster]
    #: None for a learner pickled before known directions existed.
    directions: dict[str, int] | None = None

    def __init__(
        self,
        *,
        n_estimators: int = N_ESTIMATORS,
        learning_rate: float = LEARNING_RATE,
        num_leaves: int = NUM_LEAVES,
        min_child_samples: int = MIN_CHILD_SAMPLES,
        n_jobs: int = N_JOBS,
        random_state: int = 0,
        directions: dict[str, int] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.directions = directions

    def _check_params(self) -> None:
        for name in ("n_estimators", "num_leaves", "min_child_samples", "n_jobs"):
            check_positive_int(name, getattr(self, name))
        check_positive_float("learning_rate", self.learning_rate)
        if isinstance(self.random_state, bool) or not isinstance(
            self.random_state, int | np.integer
        ):
            raise ConfigError(f"random_state must be an integer; got {self.random_state!r}")
        check_signs(self.directions)

    def _params(
        self, *, binary: bool, n_rows: int, leaf: int | None = None, outcome: bool = True
    ) -> dict[str, Any]:
        """Booster parameters for a fit on ``n_rows`` rows.

        A leaf needs ``min_child_samples`` rows (``leaf`` when given), capped by
        :func:`leaf_size`. An ``outcome`` model follows the learner's ``directions``.
        """
        params = lgbm_params(
            binary=binary,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=leaf_size(leaf or self.min_child_samples, n_rows),
            n_jobs=self.n_jobs,
            seed=int(self.random_state),
        )
        if outcome and self.directions:
            params[DIRECTIONS] = dict(self.directions)
        return params

    def _fit_outcome_models(self, data: FitData, rows: NDArray[np.bool_]) -> list[lgb.Booster]:
        """One booster per arm (control first) on ``rows``, weighted by 1 / propensity."""
        weights = inverse_propensity_weights(data.arm_code, data.propensity)

        def arm(code: int) -> Fit:
            mask = rows & (data.arm_code == code)
            params = self._params(binary=data.binary, n_rows=int(mask.sum()))
            return params, data.X[mask], data.y[mask], self.n_estimators, weights[mask]

        return fit_side_by_side(data.n_arms, arm)


def predict_outcome_matrix(models: Sequence[Booster], X: pd.DataFrame) -> FloatArray:
    """E[y | arm, x] for every arm (columns in model order), in one pass over the rows."""
    return predict_boosters(models, X, predict_threads())


class VariantLearner(LightGBMLearner):
    """A LightGBM-based learner that comes in variants, named by ``kind`` (one of ``KINDS``)."""

    KINDS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        kind: str,
        *,
        n_estimators: int = N_ESTIMATORS,
        learning_rate: float = LEARNING_RATE,
        num_leaves: int = NUM_LEAVES,
        min_child_samples: int = MIN_CHILD_SAMPLES,
        n_jobs: int = N_JOBS,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            n_jobs=n_jobs,
            random_state=random_state,
        )
        self.kind = kind

    def _check_params(self) -> None:
        super()._check_params()
        check_option("kind", self.kind, self.KINDS)


class OutcomeLearner(LightGBMLearner):
    """A learner of E[y | arm, x] for every arm; uplift is each arm's minus control's."""

    @abstractmethod
    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray: ...

    def _predict_uplift(self, X: pd.DataFrame) -> FloatArray:
        mu = self._outcome_matrix(X)
        return mu[:, 1:] - mu[:, [0]]

    def predict_outcomes(self, X: pd.DataFrame) -> pd.DataFrame:
        """E[y | arm, x] per order and arm, control first."""
        encoded = self._encode(X)
        mu = (
            self._outcome_matrix(encoded)
            if len(X)
            else np.empty((0, 1 + len(self.treatment_arms_)))
        )
        return pd.DataFrame(mu, index=X.index, columns=[self.control_, *self.treatment_arms_])


class TLearner(OutcomeLearner):
    """One LightGBM outcome model per arm; uplift is the difference to the control model.

    Rows are weighted by 1 / logged propensity within their arm, which undoes the selection
    of a targeting policy; a randomised log gets equal weights.

    Attributes
    ----------
    models_ : list of lightgbm.Booster
        Outcome models, control first, then ``treatment_arms_`` in order.
    """

    def _fit(self, data: FitData) -> None:
        self.models_ = self._fit_outcome_models(data, np.ones(len(data.y), dtype=bool))

    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray:
        return predict_outcome_matrix(self.models_, X)


class SLearner(OutcomeLearner):
    """LightGBM outcome models on the features and the arm (a categorical feature), bagged.

    All arms share one model of the baseline, so each arm's effect is learned from the
    differences the arm feature makes. Rows are weighted by 1 / logged propensity (normalised
    within arm), so every arm stands for the whole population. With ``n_bags`` > 1 each of
    ``n_bags`` models is fitted on a bootstrap sample of the orders (drawn with
    ``[random_state, bag]``) and the outcome is their mean: at the effect sizes of real nudges
    one model's choice of which arm splits to make is noisy, and averaging models over
    resamples steadies it (``benchmarks/results/grid.md``, 5 seeds per cell: share of the
    oracle's net value +1.1 points in the realistic world and +7.9 in the hard one at 20,000
    orders, +1.0 to +3.2 at 200,000; grid mean 46.4% against 43.3% for one model). Rows are
    resampled, not reweighted: with bootstrap counts as weights a leaf still needs
    ``min_child_samples`` distinct orders, and that variant gained nothing.

    Attributes
    ----------
    models_ : list of lightgbm.Booster
        The outcome models, one per bag; each one's last input is ``ARM_FEATURE``.
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

    def _check_params(self) -> None:
        super()._check_params()
        check_positive_int("n_bags", self.n_bags)

    def _fit(self, data: FitData) -> None:
        weights = inverse_propensity_weights(data.arm_code, data.propensity)
        X = self._with_arm(data.X, data.arm_code)
        params = self._params(binary=data.binary, n_rows=len(X))
        if self.n_bags == 1:
            self.models_ = [train_lgbm(params, X, data.y, self.n_estimators, weights)]
            return

        def bag(i: int) -> Fit:
            rows = np.random.default_rng([int(self.random_state), i]).integers(0, len(X), len(X))
            return params, X.iloc[rows], data.y[rows], self.n_estimators, weights[rows]

        self.models_ = fit_side_by_side(self.n_bags, bag)

    def _with_arm(self, X: pd.DataFrame, codes: NDArray[np.int64]) -> pd.DataFrame:
        arm = pd.Categorical.from_codes(
            codes, categories=pd.Index(range(1 + len(self.treatment_arms_)))
        )
        return X.assign(**{ARM_FEATURE: arm})

    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray:
        # Every arm in one pass: a tree that never splits on the arm is looked up once per row.
        arms = 1 + len(self.treatment_arms_)
        return predict_arms(self.models_, X, ARM_FEATURE, arms, predict_threads())


class DRLearner(LightGBMLearner):
    """Doubly robust learner: cross-fitted outcome models, logged propensities, LightGBM on top.

    Outcome models are fitted per arm on ``n_folds - 1`` folds and predict the held-out fold;
    the pseudo-outcomes (:func:`dr_pseudo_outcomes`) are regressed on x, one model per
    treatment arm, with ``final_min_child_samples`` rows per leaf because pseudo-outcomes are
    noisy.

    Attributes
    ----------
    models_ : list of lightgbm.Booster
        One effect model per treatment arm.
    """

    def __init__(
        self,
        *,
        n_estimators: int = N_ESTIMATORS,
        learning_rate: float = LEARNING_RATE,
        num_leaves: int = NUM_LEAVES,
        min_child_samples: int = MIN_CHILD_SAMPLES,
        final_min_child_samples: int = 500,
        n_folds: int = 2,
        n_jobs: int = N_JOBS,
        random_state: int = 0,
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
        self.final_min_child_samples = final_min_child_samples
        self.n_folds = n_folds

    def _check_params(self) -> None:
        super()._check_params()
        check_positive_int("final_min_child_samples", self.final_min_child_samples)
        check_positive_int("n_folds", self.n_folds)
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be at least 2 for cross-fitting; got {self.n_folds}")

    def _fit(self, data: FitData) -> None:
        n = len(data.y)
        rng = np.random.default_rng(self.random_state)
        fold = rng.permutation(n) % self.n_folds
        mu = np.empty((n, data.n_arms))
        for k in range(self.n_folds):
            held_out = fold == k
            models = self._fit_outcome_models(data, ~held_out)
            mu[held_out] = predict_outcome_matrix(models, data.X[held_out])
        pseudo = dr_pseudo_outcomes(data.y, data.arm_code, data.propensity, mu)
        params = self._params(
            binary=False, n_rows=n, leaf=self.final_min_child_samples, outcome=False
        )
        import lightgbm as lgb  # noqa: PLC0415 - see _train

        dataset = lgb.Dataset(data.X, label=pseudo[:, 0], params=params)
        dataset.construct()  # bin the features once, reuse them for every arm
        models = []
        for j in range(pseudo.shape[1]):
            dataset.set_label(pseudo[:, j])
            models.append(lgb.train(params, dataset, num_boost_round=self.n_estimators))
        self.models_ = models

    def _predict_uplift(self, X: pd.DataFrame) -> FloatArray:
        return predict_outcome_matrix(self.models_, X)
