"""Penalised logistic regression on the arm-interaction design, without building the design.

The linear S-learner's design (:mod:`uplift.models.linear`) repeats the feature part once per
treatment arm, and each row sets only its own arm's copy: at a million orders and five arms the
dense matrix is six times the feature part and five sixths of it zeros, and every pass of the
solver reads all of it. Here the model's linear predictor and its gradient are computed from the
feature part alone: one product of the features with a matrix of one column per arm (plus
control) gives every row's predictor under every arm, and the row's own arm picks its entry.

The objective, the solver and its settings are scikit-learn's ``LogisticRegression(C=C)`` with
lbfgs on that design with sample weights (scikit-learn 1.9): the weighted mean of the half
binomial loss plus ``1 / (2 C sum(weights))`` times the squared coefficients (not the intercept),
minimised by scipy's L-BFGS-B from zero with ``gtol`` 1e-4, ``ftol`` 64 machine epsilons and up
to 50 line-search steps. The settings matter beyond the optimum: at 200,000 orders lbfgs stops
at that tolerance after about 30 iterations, short of the optimum, and the penalties of
:mod:`uplift.models.linear` were chosen with that early stop.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from uplift.models.base import FloatArray

__all__ = ["SignedSlopes", "fit_logistic"]

# scikit-learn's LogisticRegression defaults for lbfgs (see the module docstring).
TOLERANCE = 1e-4
LINE_SEARCH_STEPS = 50


class SignedSlopes:
    """Known signs of some columns' slopes, under control and under every arm, as bounds.

    Column j's slope is its main effect under control and the main effect plus the arm's
    interaction (times its factor) under arm a: a sum, which L-BFGS-B cannot bound. So the
    solver sees, for a signed column, the arm's whole slope in place of the interaction, and
    bounds it and the main effect to the sign; ``coef`` maps its variables back to the
    coefficients (``interaction = (slope - main) / factor``), ``gradient`` maps the gradient
    there to its variables (the map is linear), and the penalty stays on the interactions.
    An interaction whose factor is 0 has no column: the main effect's bound covers the arm.
    """

    def __init__(self, signs: NDArray[np.int64], factors: FloatArray) -> None:
        k, p = factors.shape
        arm, column = np.nonzero((signs[None, :] != 0) & (factors > 0))
        self.columns = column
        self.slopes = p + k + arm * p + column  # the interactions whose variable is a slope
        self.factors = factors[arm, column]
        self.signs = signs
        self.width = p + k + k * p

    def bounds(self) -> list[tuple[float | None, float | None]]:
        """L-BFGS-B's bounds of every variable (the intercept last, free)."""
        Bound = tuple[float | None, float | None]
        per_sign: dict[int, Bound] = {1: (0.0, None), -1: (None, 0.0), 0: (None, None)}
        bounds: list[Bound] = [(None, None)] * (self.width + 1)
        for column, sign in enumerate(self.signs.tolist()):
            bounds[column] = per_sign[sign]
        for index, column in zip(self.slopes.tolist(), self.columns.tolist(), strict=True):
            bounds[index] = per_sign[int(self.signs[column])]
        return bounds

    def coef(self, v: FloatArray) -> FloatArray:
        """The coefficients (and intercept, last) of the solver's variables ``v``."""
        w = v.copy()
        w[self.slopes] = (v[self.slopes] - v[self.columns]) / self.factors
        return w

    def gradient(self, grad: FloatArray) -> FloatArray:
        """The gradient in the solver's variables from the gradient in the coefficients."""
        out = grad.copy()
        through = grad[self.slopes] / self.factors
        out[self.slopes] = through
        np.subtract.at(out, self.columns, through)
        return out


def fit_logistic(
    base: FloatArray,
    arm_code: NDArray[np.int64],
    factors: FloatArray,
    y: FloatArray,
    weights: FloatArray,
    C: float,
    max_iter: int,
    signs: NDArray[np.int64] | None = None,
) -> tuple[FloatArray, float]:
    """Coefficients and intercept of the fit. ``coef`` holds the main effects (one per column
    of ``base``), the arm effects (one per treatment arm) and the interactions (arm by arm), as
    they enter: multiplied by ``factors`` (arms x columns). ``signs`` (one per column of
    ``base``: 1, -1 or 0 for free) bound each column's slope under control and every arm
    (:class:`SignedSlopes`)."""
    from scipy.optimize import minimize  # noqa: PLC0415 - imported by the fit, as scikit-learn is
    from scipy.special import expit  # noqa: PLC0415

    n, p = base.shape
    k = factors.shape[0]
    width = p + k + k * p
    total = float(weights.sum())
    strength = 1.0 / (C * total)
    # Column by column in memory: both products below then run 2-4 times as fast as on rows
    # (a product with a matrix of six columns is bound by the reads of the long one).
    columns = np.asfortranarray(base).T
    treated = arm_code > 0
    everyone = np.arange(n)
    by_arm = np.empty((1 + k, p))
    per_arm = np.zeros((n, 1 + k))  # the gradient's rows, spread over control and each arm

    def loss_gradient(w: FloatArray) -> tuple[float, FloatArray]:
        coef, intercept = w[:width], w[width]
        by_arm[0] = coef[:p]
        by_arm[1:] = coef[p + k :].reshape(k, p) * factors
        every = by_arm @ columns  # each row's predictor under control, its arm's part under each
        arm_effect = np.concatenate([[intercept], coef[p : p + k] + intercept])
        raw = every[0] + np.where(treated, every[arm_code, everyone], 0.0) + arm_effect[arm_code]
        loss = float(weights @ (np.logaddexp(0.0, raw) - y * raw)) / total
        pointwise = weights * (expit(raw) - y) / total
        per_arm[everyone, arm_code] = np.where(treated, pointwise, 0.0)
        per_arm[:, 0] = pointwise  # every row is in the main effects, control's only there
        spread = columns @ per_arm
        grad = np.empty(width + 1)
        grad[:p] = spread[:, 0]
        grad[p : p + k] = np.bincount(arm_code, weights=pointwise, minlength=1 + k)[1:]
        grad[p + k : width] = (spread[:, 1:].T * factors).ravel()
        grad[:width] += strength * coef
        grad[width] = pointwise.sum()
        return loss + 0.5 * strength * float(coef @ coef), grad

    signed = SignedSlopes(signs, factors) if signs is not None and np.any(signs) else None

    def objective(v: FloatArray) -> tuple[float, FloatArray]:
        if signed is None:
            return loss_gradient(v)
        loss, grad = loss_gradient(signed.coef(v))
        return loss, signed.gradient(grad)

    result = minimize(
        objective,
        np.zeros(width + 1),  # inside every bound
        method="L-BFGS-B",
        jac=True,
        bounds=None if signed is None else signed.bounds(),
        options={
            "maxiter": max_iter,
            "maxls": LINE_SEARCH_STEPS,
            "gtol": TOLERANCE,
            "ftol": 64 * np.finfo(float).eps,
        },
    )
    x = result.x if signed is None else signed.coef(result.x)
    return np.asarray(x[:width]), float(x[width])
