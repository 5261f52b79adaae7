"""Every arm's probability for every logged order, from the log's propensities.

A log records the probability of the arm each order got, not of the arms it did not get, yet
causalml and econml want P(arm | x) for several arms per order. In a randomised log every
arm's probability is its constant logged propensity, which this module uses exactly. In a log
of a targeting policy the logged arm's column is the logged propensity, and the rest of the
probability is shared among the other arms in proportion to a LightGBM classifier of the arm
on the features: logged where known, estimated only where the log is silent.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from uplift.models.base import FitData, FloatArray
from uplift.models.learners import lgbm_params, train_lgbm

__all__ = ["arm_probabilities", "pairwise"]

# Pairwise propensities handed to causalml must lie strictly inside (0, 1).
PAIR_CLIP = 1e-3


def arm_probabilities(data: FitData, *, n_jobs: int, seed: int) -> FloatArray:
    """P(arm | x) for every order (rows) and arm (columns: control, then treatment arms)."""
    n, k = len(data.y), data.n_arms
    rows = np.arange(n)
    if _constant_within_arms(data.arm_code, data.propensity, k):
        totals = np.bincount(data.arm_code, weights=data.propensity, minlength=k)
        shares = totals / np.bincount(data.arm_code, minlength=k)
        return np.tile(shares / shares.sum(), (n, 1))
    params = lgbm_params(
        binary=False,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=200,
        n_jobs=n_jobs,
        seed=seed,
    ) | {"objective": "multiclass", "num_class": k}
    booster = train_lgbm(params, data.X, data.arm_code.astype(np.float64), 50)
    estimated = np.asarray(booster.predict(data.X), dtype=np.float64).reshape(n, k)
    estimated[rows, data.arm_code] = 0.0
    others = estimated / estimated.sum(axis=1, keepdims=True)
    probabilities = others * (1.0 - data.propensity)[:, None]
    probabilities[rows, data.arm_code] = data.propensity
    return probabilities


def _constant_within_arms(codes: NDArray[np.int64], propensity: FloatArray, k: int) -> bool:
    low = np.full(k, np.inf)
    high = np.full(k, -np.inf)
    np.minimum.at(low, codes, propensity)
    np.maximum.at(high, codes, propensity)
    return bool(np.all(high - low < 1e-9))


def pairwise(probabilities: FloatArray) -> FloatArray:
    """P(arm | x, arm or control) per treatment arm: what causalml calls ``p``."""
    treated = probabilities[:, 1:]
    pair = treated / (treated + probabilities[:, [0]])
    return np.clip(pair, PAIR_CLIP, 1.0 - PAIR_CLIP)
