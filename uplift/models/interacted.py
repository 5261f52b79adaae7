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

__all__ = ["fit_logistic"]

# scikit-learn's LogisticRegression defaults for lbfgs (see the module docstring).
TOLERANCE = 1e-4
LINE_SEARCH_STEPS = 50


def fit_logistic(
    base: FloatArray,
    arm_code: NDArray[np.int64],
    factors: FloatArray,
    y: FloatArray,
    weights: FloatArray,
    C: float,
    max_iter: int,
) -> tuple[FloatArray, float]:
    """Coefficients and intercept of the fit. ``coef`` holds the main effects (one per column
    of ``base``), the arm effects (one per treatment arm) and the interactions (arm by arm), as
    they enter: multiplied by ``factors`` (arms x columns)."""
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

    result = minimize(
        loss_gradient,
        np.zeros(width + 1),
        method="L-BFGS-B",
        jac=True,
        options={
            "maxiter": max_iter,
            "maxls": LINE_SEARCH_STEPS,
            "gtol": TOLERANCE,
            "ftol": 64 * np.finfo(float).eps,
        },
    )
    return np.asarray(result.x[:width]), float(result.x[width])
