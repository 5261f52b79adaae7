"""A regularised linear S-learner for small logs and tiny effects.

One generalised linear model of the outcome on the features, the arm and every arm x feature
interaction: L2-penalised logistic regression for a 0/1 outcome, ridge regression for a
continuous one. Trees need many orders per leaf to see an effect of a percent; a linear model
pools every order into each coefficient, so it can find such an effect, as long as it is
roughly linear in the features. A model of this kind beat our gradient-boosted default on a
real promotion experiment (one treatment, ~1% purchase rate); on the simulated order world it
is ahead of it by 3-10 points at 200,000 orders and behind at 20,000 (see the settings below).

The design matrix, in column order:

* numeric features, standardised with the mean and standard deviation of fit (a missing number
  is the fit median, :meth:`FeatureEncoder.to_numpy`), then a 0/1 indicator for every numeric
  column that had missing values in fit;
* every level seen in fit of every categorical feature, 0/1 (all levels, no reference: a missing
  or unseen level is all zeros and so is learned like a level of its own through the intercept);
* one 0/1 dummy per treatment arm (control is the reference);
* per treatment arm, that arm's dummy times every column above: the arm's effect may vary with
  every feature, which is what carries the heterogeneity.

The logistic fit never writes this design out (:mod:`uplift.models.interacted` computes with the
feature part alone); the ridge fit of a continuous outcome does.

Which signals modify which arm's effect is what a generic design lacks: with every arm x signal
interaction equally free, the noise of the many that do nothing blurs the few that do
(``benchmarks/results/ceiling.md``). So on a large log the fit is done twice: the second fit
penalises each group of interactions (one arm x one signal: a number with its missing
indicator, or every level of a category) in inverse proportion to the group's size in the
first (an adaptive ridge, the reweighting that approximates a group lasso), so that groups the
data supports are freed and the rest shrink.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, SchemaError
from uplift.models.base import FeatureEncoder, FitData, FloatArray, check_positive_float
from uplift.models.interacted import SignedSlopes, fit_logistic
from uplift.models.learners import OutcomeLearner, check_signs, inverse_propensity_weights

__all__ = [
    "INTERACTION_SCALE",
    "INVERSE_PENALTY",
    "PENALTY_ORDERS",
    "LinearLearner",
    "adapted_scales",
    "base_width",
    "categorical_levels",
    "effective_size",
    "numeric_columns",
    "penalty_for",
    "signal_groups",
    "size_step",
]

# Penalty strength (sklearn's C: larger is weaker) and the factor of the interaction columns
# in the fit (their coefficients are then penalised 1 / scale**2 times as strongly as the main
# effects), at 20,000 orders. Chosen on the realistic order world as bench_models.py's grid_cell
# builds it (training orders simulate(orders, seed=100 + s), 100,000 fresh orders, seed 200 + s)
# for s = 10-12, apart from the grid's own s = 0-4: share of the oracle's net value, mean over s:
#
#   C       scale 1       0.5           0.25          0.15          (20k / 200k orders)
#   0.001   25.7 / 41.7   33.2 / 46.4   42.8 / 45.6
#   0.01    34.2 / 57.3   39.7 / 60.7   45.3 / 59.3   44.6 / 54.8
#   0.03                                43.2 / 58.9   45.8 / 56.1
#   0.1     28.7 / 59.7   34.1 / 60.2   38.4 / 57.7
#   1       25.4 / 58.0   27.7 / 60.8   32.0 / 58.6
#
# A strong penalty on the interactions is what small logs need (+11 points at 20,000 orders
# against scale 1) and costs little at 200,000. On seven more seeds (13-19) at 20,000 orders
# the choice held: 36.1 against 37.3 for the best cell (C 0.03, scale 0.25), 31.8 at scale 1.
INVERSE_PENALTY = 0.01
INTERACTION_SCALE = 0.25
# A large log supports weaker penalties: from 20,000 to 200,000 orders C grows tenfold and the
# interaction factor doubles, log-linearly in the orders (constant outside; the orders are the
# log's effective size under the fit's propensity weights, see effective_size). Measured on seeds
# 10-14 (not the grid's), in the blend with the bagged S-learner, at 200,000 orders: C 0.1 and
# scale 0.5 kept 63.0 / 39.7 / 60.4 % of the oracle's net value in the easy world with effects
# scaled to 0.2 / hard / realistic against 59.6 / 39.1 / 57.9 with the 20,000-order penalty
# (linear alone: 60.4 / 35.7 / 57.9 against 56.5 / 36.5 / 54.8); any interaction variance
# C * scale**2 from 0.0025 to 1 was within a point or two of it. At 20,000 orders the weaker
# penalty lost 8-13 points (in the blend, hard: 24.6 against 32.4). On the grid's own seeds
# (benchmarks/results/stacking.md, realistic / hard / easy-0.2 at 200,000 orders, before the
# adaptation below) the linear learner went from 58.9 / 44.0 / 57.8 to 63.3 / 45.7 / 67.1,
# the blend from 61.6 / 45.1 / 61.1 to 65.0 / 48.7 / 68.1.
PENALTY_ORDERS = (20_000, 200_000)
# The adaptation (the power of a group's relative size that sets its penalty in the second fit)
# follows the same size rule, from 0 (one fit, one penalty) at 20,000 orders to 1 at 200,000.
# Measured on seeds 10-14 (not the grid's), the blend with the bagged S-learner, share of the
# oracle's net value, adaptation 1 against 0: at 200,000 orders easy-0.2 64.6 against 63.0,
# realistic 61.3 against 60.4, hard 39.3 against 39.7 (linear alone: 62.4 / 61.3 / 34.9 against
# 60.4 / 57.9 / 35.7); at 20,000 orders it lost 0.9 points in both worlds (realistic 41.8
# against 42.7, hard 31.5 against 32.4): on a small log the first fit's group sizes are mostly
# noise. A power of 2 or a third fit did no better at 200,000 orders (64.7 and 64.1, easy-0.2).
# On the grid's own seeds (benchmarks/results/stacking.md) the linear learner went from 63.3 /
# 45.7 / 67.1 to 65.3 / 47.4 / 68.8 (realistic / hard / easy-0.2, 200,000 orders), the blend
# from 65.0 / 48.7 / 68.1 to 66.6 / 50.7 / 69.2.
MAX_ADAPTATION = 1.0
# Rows of the first fit, whose only use is the groups' relative sizes: past the size where the
# penalty stops changing, more rows move them little, and at a million orders the first fit on
# every row would cost train 6 s of its minute.
PILOT_ORDERS = 200_000
# lbfgs iterations; standardised columns converge in far fewer.
MAX_ITER = 1000


def size_step(orders: float) -> float:
    """Where ``orders`` lies from the first to the second of :data:`PENALTY_ORDERS`: 0 to 1,
    log-linearly, constant outside; the size rule of every default that follows the log's size."""
    low, high = PENALTY_ORDERS
    return float(np.log10(min(max(orders, low), high) / low) / np.log10(high / low))


def penalty_for(orders: float) -> tuple[float, float, float]:
    """The default ``C``, interaction factor and adaptation for a log of ``orders`` rows (see
    above)."""
    step = size_step(orders)
    return (
        float(INVERSE_PENALTY * 10**step),
        float(INTERACTION_SCALE * 2**step),
        float(MAX_ADAPTATION * step),
    )


def effective_size(weights: FloatArray) -> float:
    """Kish's effective sample size of weighted rows: the rows of a randomised log (equal
    weights within each arm), fewer for a targeting policy's log weighted back to the
    population, whose few explored orders carry much of the weight."""
    return float(weights.sum() ** 2 / (weights**2).sum())


def numeric_columns(encoder: FeatureEncoder) -> list[str]:
    """The encoder's numeric columns, in column order: the ones that are standardised."""
    return [c for c in encoder.columns if c not in encoder.categories]


def categorical_levels(encoder: FeatureEncoder) -> list[tuple[str, pd.Index]]:
    """The encoder's categorical columns and their levels, in column order."""
    return [(c, encoder.categories[c]) for c in encoder.columns if c in encoder.categories]


def signal_groups(encoder: FeatureEncoder) -> NDArray[np.int64]:
    """For each column of the feature part of the design, the index of its signal: a number
    and its missing indicator share one, as do all the levels of a category."""
    numeric = numeric_columns(encoder)
    groups = list(range(len(numeric)))
    groups += [numeric.index(c) for c in encoder.with_missing]
    for c, levels in categorical_levels(encoder):
        groups += [len(numeric) + encoder.columns.index(c)] * len(levels)
    return np.unique(groups, return_inverse=True)[1].astype(np.int64)


def adapted_scales(effects: FloatArray, groups: NDArray[np.int64], power: float) -> FloatArray:
    """Per (arm, column) factors for a refit: ``effects`` (arms x columns, coefficients of the
    standardised columns) sized per group as the root mean square of its coefficients, a group
    twice the average size gets its variance (its squared factor) ``2**power`` times the
    average's. The mean group keeps factor 1; a group of zeros gets 0."""
    counts = np.bincount(groups)
    size = np.sqrt(np.stack([np.bincount(groups, weights=row**2) for row in effects]) / counts)
    mean = size.mean()
    relative = size / mean if mean > 0 else np.ones_like(size)
    return np.asarray(np.sqrt(relative**power)[:, groups], dtype=np.float64)


def base_width(encoder: FeatureEncoder) -> int:
    """Columns of the feature part of the design: numbers, missing indicators, levels."""
    levels = sum(len(v) for v in encoder.categories.values())
    return len(numeric_columns(encoder)) + len(encoder.with_missing) + levels


class LinearLearner(OutcomeLearner):
    """L2-penalised GLM of the outcome on features, arm and arm x feature interactions.

    Rows are weighted by 1 / logged propensity (normalised within arm, capped as for every
    learner), so a targeting policy's log stands for the whole population. The fit is
    deterministic (lbfgs or a direct ridge solve): it takes no seed.

    Parameters
    ----------
    C : float or None
        Inverse penalty strength, as in scikit-learn: the objective is the weighted sum of the
        row losses times ``C`` plus half the squared coefficients (the intercept is not
        penalised). A continuous outcome is divided by its standard deviation for the fit,
        so ``C`` means the same for revenue as for a rate. None: by the log's size
        (:func:`penalty_for`).
    interaction_scale : float or None
        Factor of the interaction columns in the fit; below 1 penalises interactions more
        than main effects. None: by the log's size (:func:`penalty_for`).
    adaptation : float or None
        Power of each (arm, signal) group's relative size in the first fit that sets its
        factor in a second (:func:`adapted_scales`); 0 fits once with one factor for every
        interaction. None: by the log's size (:func:`penalty_for`).
    directions : dict or None
        Numeric inputs whose slope has a known sign (1 or -1) under control and under every
        arm: the fit is bounded to it (:class:`~uplift.models.interacted.SignedSlopes`).

    Attributes
    ----------
    coef_ : ndarray
        Coefficients of the design columns (see the module docstring), on the original
        scale of the columns and outcome.
    intercept_ : float
        Intercept (log-odds for a 0/1 outcome).
    means_, scales_ : ndarray
        Mean and standard deviation in fit of each numeric column (:func:`numeric_columns`).
    penalty_ : tuple of float
        The ``C``, interaction factor and adaptation the fit used.
    """

    def __init__(
        self,
        *,
        C: float | None = None,
        interaction_scale: float | None = None,
        adaptation: float | None = None,
        directions: dict[str, int] | None = None,
    ) -> None:
        self.C = C
        self.interaction_scale = interaction_scale
        self.adaptation = adaptation
        self.directions = directions

    def _check_params(self) -> None:
        for name in ("C", "interaction_scale", "adaptation"):
            if getattr(self, name) is not None:
                check_positive_float(name, getattr(self, name), zero=name == "adaptation")
        check_signs(self.directions)

    def _fit(self, data: FitData) -> None:
        base = self._numbers(data.X)
        width = len(numeric_columns(self.encoder_))
        numbers = base[:, :width]
        self.means_ = numbers.mean(axis=0)
        sd = numbers.std(axis=0)
        self.scales_ = np.where(sd > 0, sd, 1.0)  # a constant column stays 0 after centring
        self._standardise(base)
        n, p = base.shape
        k = len(data.treatment_arms)
        weights = inverse_propensity_weights(data.arm_code, data.propensity)
        chosen = (self.C, self.interaction_scale, self.adaptation)
        by_size = penalty_for(effective_size(weights))
        C, scale, adaptation = (
            s if c is None else float(c) for c, s in zip(chosen, by_size, strict=True)
        )
        self.penalty_ = (C, scale, adaptation)
        if data.binary and len(np.unique(data.y)) < 2:
            raise SchemaError("y holds only one value; a logistic model has nothing to learn")
        signs = self._signs(p)
        factors = np.full((k, p), scale)
        if adaptation > 0:
            # The groups' sizes from a first fit on at most PILOT_ORDERS rows, spread evenly
            # over the log (which may be sorted by time).
            rows = np.unique(np.linspace(0, n - 1, min(n, PILOT_ORDERS)).astype(np.int64))
            pilot = base if len(rows) == n else base[rows]
            first, _ = _solve(
                pilot,
                data.arm_code[rows],
                factors,
                data.y[rows],
                weights[rows],
                C,
                data.binary,
                signs,
            )
            effects = first[p + k :].reshape(k, p) * factors  # of the standardised columns
            factors = scale * adapted_scales(effects, signal_groups(self.encoder_), adaptation)
        coef, intercept = _solve(
            base, data.arm_code, factors, data.y, weights, C, data.binary, signs
        )
        # Fold the interaction factors into the coefficients, so that prediction (and a saved
        # model) needs only the plain design.
        coef[p + k :] *= factors.ravel()
        self.coef_ = coef
        self.intercept_ = intercept

    def _signs(self, p: int) -> NDArray[np.int64]:
        """The sign of every column of the design's feature part that ``directions`` name
        (their numbers, standardised with a positive scale: the sign is the number's), else 0."""
        numeric = numeric_columns(self.encoder_)
        known = self.directions or {}
        unknown = sorted(set(known) - set(numeric))
        if unknown:
            raise ConfigError(f"directions name no numeric input: {', '.join(unknown)}")
        signs = np.zeros(p, dtype=np.int64)
        signs[: len(numeric)] = [known.get(c, 0) for c in numeric]
        return signs

    def _numbers(self, X: pd.DataFrame) -> FloatArray:
        """The feature part of the design for encoded ``X``, numbers not yet standardised.

        The numbers and missing indicators of :meth:`FeatureEncoder.to_numpy`, then the 0/1
        levels, column by column in memory (Fortran order): each column is written in one go,
        and the products of the fit and of prediction, which read every row for a few
        coefficient vectors at a time, run 2-4 times as fast on columns as on rows.
        """
        encoder = self.encoder_
        medians = getattr(encoder, "medians", {})
        base = np.empty((len(X), base_width(encoder)), order="F")
        j = 0
        for c in numeric_columns(encoder):
            base[:, j] = X[c].fillna(medians.get(c, 0.0)).to_numpy(np.float64)
            j += 1
        for c in getattr(encoder, "with_missing", ()):
            base[:, j] = X[c].isna().to_numpy()
            j += 1
        for c, seen in categorical_levels(encoder):
            codes = X[c].cat.codes.to_numpy()
            for level in range(len(seen)):
                np.equal(codes, level, out=base[:, j])
                j += 1
        return base

    def _standardise(self, base: FloatArray) -> None:
        """Centre and scale the numeric columns of ``base`` in place, as in fit."""
        numbers = base[:, : len(self.means_)]
        np.subtract(numbers, self.means_, out=numbers)
        np.divide(numbers, self.scales_, out=numbers)

    def _base(self, X: pd.DataFrame) -> FloatArray:
        """The feature part of the design for encoded ``X``."""
        base = self._numbers(X)
        self._standardise(base)
        return base

    def _outcome_matrix(self, X: pd.DataFrame) -> FloatArray:
        base = self._base(X)
        p, k = base.shape[1], len(self.treatment_arms_)
        main, arm, interactions = (
            self.coef_[:p],
            self.coef_[p : p + k],
            self.coef_[p + k :].reshape(k, p),
        )
        # Every arm's linear predictor from one product with the columns: control's
        # coefficients, then each arm's (main effects plus that arm's interactions).
        by_arm = np.vstack([main, main + interactions])
        eta = (by_arm @ base.T).T  # rows x (1 + arms), a view of the product's transpose
        eta += np.concatenate([[self.intercept_], self.intercept_ + arm])
        if self.binary_outcome_:
            from scipy.special import expit  # noqa: PLC0415 - 0.1 s, and only a 0/1 outcome needs it

            expit(eta, out=eta)
        return eta


def _solve(
    base: FloatArray,
    arm_code: NDArray[np.int64],
    factors: FloatArray,
    y: FloatArray,
    weights: FloatArray,
    C: float,
    binary: bool,
    signs: NDArray[np.int64],
) -> tuple[FloatArray, float]:
    """Coefficients (of the design's columns with the interactions times ``factors``) and
    intercept of the penalised fit, on the outcome's scale; each column's slope under control
    and every arm of the sign ``signs`` gives it (0: free)."""
    if binary:
        return fit_logistic(base, arm_code, factors, y, weights, C, MAX_ITER, signs)
    # Imported by the fit: scikit-learn takes a second to import, which prediction skips.
    from sklearn.linear_model import Ridge  # noqa: PLC0415

    n, p = base.shape
    k = factors.shape[0]
    # Written in place; every entry a row's arm does not set is 0.
    design = np.zeros((n, p * (1 + k) + k))
    design[:, :p] = base
    design[:, p : p + k] = arm_code[:, None] == np.arange(1, k + 1)
    interactions = design[:, p + k :].reshape(n, k, p)  # a view: arm j's block is [:, j]
    treated = np.flatnonzero(arm_code > 0)
    interactions[treated, arm_code[treated] - 1] = factors[arm_code[treated] - 1] * base[treated]
    # Standardised outcome: the penalty then weighs the same against the data for revenue
    # in any currency as for a rate. The design is not needed after: centred in place.
    y_scale = float(y.std()) or 1.0
    if np.any(signs):
        coef, intercept = _bounded_ridge(
            design, y / y_scale, weights, 1.0 / C, SignedSlopes(signs, factors)
        )
        return coef * y_scale, intercept * y_scale
    ridge = Ridge(alpha=1.0 / C, copy_X=False)
    ridge.fit(design, y / y_scale, sample_weight=weights)
    return np.asarray(ridge.coef_, dtype=np.float64) * y_scale, float(ridge.intercept_) * y_scale


def _bounded_ridge(
    design: FloatArray, y: FloatArray, weights: FloatArray, alpha: float, signed: SignedSlopes
) -> tuple[FloatArray, float]:
    """Ridge's objective (the weighted squared errors plus ``alpha`` times the squared
    coefficients, the intercept free) with the slopes ``signed`` bounds, by L-BFGS-B."""
    from scipy.optimize import minimize  # noqa: PLC0415 - imported by the fit

    width = design.shape[1]
    total = float(weights.sum())  # the objective over the weights' sum: the same optimum

    def objective(v: FloatArray) -> tuple[float, FloatArray]:
        w = signed.coef(v)
        residual = y - design @ w[:width] - w[width]
        weighted = weights * residual
        grad = np.empty(width + 1)
        grad[:width] = 2 * (alpha * w[:width] - design.T @ weighted) / total
        grad[width] = -2 * weighted.sum() / total
        loss = (float(weighted @ residual) + alpha * float(w[:width] @ w[:width])) / total
        return loss, signed.gradient(grad)

    result = minimize(
        objective,
        np.zeros(width + 1),
        method="L-BFGS-B",
        jac=True,
        bounds=signed.bounds(),
        # A quadratic: run to a gradient of 1e-10 and a relative change of 64 machine epsilons
        # (L-BFGS-B's defaults stop 1e-4 short of Ridge's direct solve).
        options={"maxiter": MAX_ITER, "gtol": 1e-10, "ftol": 64 * np.finfo(float).eps},
    )
    x = signed.coef(result.x)
    return np.asarray(x[:width]), float(x[width])
