"""Off-policy value: what a policy would have earned, estimated from a log of another policy.

A policy picks an arm for every order: either one arm per order (an array of arm labels) or
a probability per order and arm (a DataFrame whose columns are arms and whose rows sum to 1).
From a log of (logged ``arm``, ``outcome``, ``propensity`` = probability of the logged arm)
five estimators of the policy's mean outcome per order are offered:

* ``ipw``: inverse propensity weighting, ``mean(w * y)`` with ``w = pi(logged arm) /
  propensity``. Unbiased when the propensities are right; variance grows with ``w``.
* ``snipw``: self-normalised IPW, ``sum(w * y) / sum(w)``. Slightly biased, usually far less
  variable; its interval uses the delta method.
* ``dr``: doubly robust, ``mean(sum_a pi(a) * mu[a] + w * (y - mu[logged arm]))`` with ``mu``
  an outcome model's prediction under every arm. Unbiased when either the propensities or
  ``mu`` are right, and low-variance when ``mu`` is good.
* ``switch_dr`` (Wang, Agarwal and Dudik 2017): DR whose correction ``w * (y - mu[logged])``
  is kept only where ``w <= tau``; elsewhere the direct term alone.
* ``dros``, DR with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy and Dudik 2020): DR
  with ``w`` replaced by ``lambda * w / (w**2 + lambda)``.

The last two are for near-deterministic logging policies, where the few explored orders carry
weights like 1 / 0.008 and make DR wide and skewed: they trade that variance for a bias. Their
hyperparameter is chosen per policy from the data, as in those papers and in Open Bandit
Pipeline (``tuning_method="mse"``): the value on a fixed grid minimising the estimated MSE
``mean(d)**2 + var(contributions) / n``, where ``d = (w - w_shrunk) * (y - mu[logged])`` is the
part of DR's correction dropped, so ``mean(d)`` is Su et al.'s direct estimate of the bias. The
grids start at 1, since weights up to 1 add no more variance than an on-policy sample: ``tau``
in {1, the 0, 5, ..., 100% quantiles of the weights above 1, inf} (switching only changes at a
weight), ``lambda = t**2`` for 25 ``t`` geometrically spaced from 1 to the largest weight, and
inf (``lambda = t**2`` halves the weight ``t`` and at most halves those up to 1). Ties go to
inf, which is exactly ``dr``; with no weight above 1 it is the only candidate. In a paired
difference each policy keeps its own tuned value.

Their interval is DR's, widened where needed to hold their own value: ``[min(value, DR's
lower), max(value, DR's upper)]``. ``value +- 1.96 se`` would be badly overconfident: the tuning
picks the hyperparameter whose dropped part happens to average near 0, so the value carries
DR's error while its ``se`` leaves the dropped part out (in the 200 logs of
``tests/experiment/test_offpolicy_shrinkage.py`` it covers the truth 55% of the time for
``switch_dr``, 67% for ``dros``). Nor does an estimated bias bound help: ``mean(d)`` is as noisy
as the DR correction it removes, so an honest bound (``|mean(d)| + 1.96 std(d) / sqrt(n)`` added
to ``1.96 se``) gives an interval that contains DR's and is wider. These estimators sharpen the
point estimate (lower RMSE in that test), not the interval.

Every estimator is written as per-order contributions whose mean is the estimate, so its
standard error is ``std(contributions) / sqrt(n)`` (influence function), and the difference of
two policies on the same log uses the per-order differences of contributions (paired), which
gives the right interval for the difference. The intervals are for the value over the
population the orders are drawn from; for the value on the logged orders themselves they are
conservative (they also carry the order-to-order spread). Arm costs are subtracted per order:
``value = outcome - sum_a pi(a) * cost[a]``.

References: Dudik, Langford and Li (2011), "Doubly robust policy evaluation and learning";
Swaminathan and Joachims (2015), "The self-normalized estimator for counterfactual learning";
Wang, Agarwal and Dudik (2017), "Optimal and adaptive off-policy evaluation in contextual
bandits"; Su, Dimakopoulou, Krishnamurthy and Dudik (2020), "Doubly robust off-policy
evaluation with shrinkage"; Saito, Aihara, Matsutani and Narita (2021), "Open Bandit Dataset
and Pipeline" (``obp.ope.SwitchDoublyRobustTuning``, ``DoublyRobustWithShrinkageTuning``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from uplift.exceptions import ConfigError, SchemaError, check_option, describe_rows
from uplift.experiment.metrics import Z95, FloatArray, as_vector

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "Estimator",
    "PolicyComparison",
    "baseline_policies",
    "compare_policies",
    "policy_value",
    "value_policies",
]

Estimator = Literal["ipw", "snipw", "dr", "switch_dr", "dros"]
ESTIMATORS: tuple[Estimator, ...] = ("ipw", "snipw", "dr", "switch_dr", "dros")
#: What value_policies and compare_policies use unless told otherwise.
DEFAULT_ESTIMATORS: tuple[Estimator, ...] = ("ipw", "snipw", "dr")
#: DR variants whose weights are shrunk by a hyperparameter tuned on the log.
_TUNED: tuple[Estimator, ...] = ("switch_dr", "dros")
#: A policy: one arm label per order, or a probability per order (rows) and arm (columns).
PolicyLike = ArrayLike | pd.DataFrame


@dataclass(frozen=True)
class PolicyValue:
    """Estimated mean value per order of one policy (net of costs), with a normal 95% interval.

    For ``switch_dr`` and ``dros``, ``tuning`` is the ``tau`` or ``lambda`` used and the interval
    is DR's, widened if needed to hold ``value`` (not ``value +- 1.96 se``; see the module
    docstring). For the others ``tuning`` is None.
    """

    policy: str
    estimator: str
    value: float
    se: float
    ci_lower: float
    ci_upper: float
    n: int
    tuning: float | None = None


@dataclass(frozen=True, eq=False)
class _Log:
    """The logged columns as arrays, with arms coded as column positions of ``arms``."""

    arms: tuple[str, ...]
    logged: NDArray[np.intp]
    outcome: FloatArray
    propensity: FloatArray
    index: pd.Index


def _read_log(
    log: pd.DataFrame, outcome: str, arms: Sequence[str] | None, extra: Sequence[str]
) -> _Log:
    for column in ("arm", outcome, "propensity"):
        if column not in log.columns:
            raise SchemaError(f"log has no column {column!r}; columns: {list(log.columns)}")
    labels = log["arm"].astype(str).to_numpy()
    universe = tuple(arms) if arms is not None else tuple(sorted({*labels, *extra}))
    missing = np.flatnonzero(~np.isin(labels, universe))
    if missing.size:
        raise SchemaError(
            f"log column 'arm' holds arms the outcome model mu has no column for: "
            f"{sorted({str(a) for a in labels[missing]})} at {describe_rows(log.index[missing])}"
        )
    n = len(log)
    if n < 2:
        raise SchemaError(f"log has {n} row(s); valuing a policy needs at least 2 orders")
    propensity = as_vector(log["propensity"].to_numpy(float), "log column 'propensity'", n)
    bad = np.flatnonzero((propensity <= 0) | (propensity > 1))
    if bad.size:
        raise SchemaError(
            f"log column 'propensity' must be in (0, 1] (the logged arm's probability); "
            f"got other values at {describe_rows(log.index[bad])}"
        )
    return _Log(
        arms=universe,
        logged=_codes(universe, labels),
        outcome=as_vector(log[outcome].to_numpy(float), f"log column {outcome!r}", n),
        propensity=propensity,
        index=log.index,
    )


def _codes(arms: Sequence[str], labels: NDArray[np.str_] | NDArray[np.object_]) -> NDArray[np.intp]:
    """Position of every label in ``arms``; -1 for a label not among them."""
    return np.asarray(pd.Index(list(arms)).get_indexer(pd.Index(labels)), dtype=np.intp)


def _aligned(frame: pd.DataFrame, name: str, data: _Log) -> pd.DataFrame:
    if not frame.index.equals(data.index):
        raise SchemaError(
            f"{name} must be indexed like the log (same rows, same order); align it first"
        )
    missing = [a for a in data.arms if a not in frame.columns]
    if missing:
        raise SchemaError(
            f"{name} has no column for arm(s) {missing}; columns: {list(frame.columns)}"
        )
    return frame[list(data.arms)]


def _policy_matrix(policy: PolicyLike, data: _Log) -> FloatArray:
    """Probability per order (rows) and arm (columns in ``data.arms`` order)."""
    n = data.logged.size
    if isinstance(policy, pd.DataFrame):
        matrix = _aligned(policy, "policy", data).to_numpy(float)
        bad = np.flatnonzero(
            ~np.isfinite(matrix).all(axis=1)
            | (matrix < 0).any(axis=1)
            | ~np.isclose(matrix.sum(axis=1), 1.0, atol=1e-9)
        )
        if bad.size:
            raise SchemaError(
                f"policy probabilities must be >= 0 and sum to 1 per order; "
                f"not so at {describe_rows(data.index[bad])}"
            )
        return matrix
    labels = np.asarray(policy).astype(str)
    if labels.shape != (n,):
        raise SchemaError(f"policy must hold one arm per order ({n}); got shape {labels.shape}")
    codes = _codes(data.arms, labels)
    unknown = np.flatnonzero(codes < 0)
    if unknown.size:
        raise SchemaError(
            f"policy picks arms the outcome model mu has no column for: "
            f"{sorted({str(a) for a in labels[unknown]})} at {describe_rows(data.index[unknown])}"
        )
    matrix = np.zeros((n, len(data.arms)))
    matrix[np.arange(n), codes] = 1.0
    return matrix


def _cost_vector(costs: Mapping[str, float] | None, arms: Sequence[str]) -> FloatArray:
    costs = dict(costs or {})
    unknown = sorted(set(costs) - set(arms))
    if unknown:
        raise ConfigError(f"costs name unknown arm(s) {unknown}; arms: {list(arms)}")
    return np.array([float(costs.get(arm, 0.0)) for arm in arms])


@dataclass(frozen=True, eq=False)
class _Estimate:
    """Per-order contributions (their mean is the value), the per-order part of DR's correction
    that switch_dr and dros drop (its mean estimates their bias; 0 for the others) and their
    tuned hyperparameter."""

    contributions: FloatArray
    dropped: FloatArray
    tuning: float | None = None


def _plain(contributions: FloatArray) -> _Estimate:
    return _Estimate(contributions, np.zeros_like(contributions))


def _shrunk(estimator: Estimator, w: FloatArray, h: float) -> FloatArray:
    if h == np.inf:
        return w
    if estimator == "switch_dr":
        return np.where(w <= h, w, 0.0)
    # where= keeps w = 0 at 0 when lambda = 0 (0 / 0 otherwise).
    return np.divide(h * w, w**2 + h, out=np.zeros_like(w), where=w > 0)


def _grid(estimator: Estimator, w: FloatArray) -> FloatArray:
    """Candidate tau / lambda, inf (= dr) first so that it wins ties (see module docstring)."""
    large = w[w > 1]
    if large.size == 0:
        return np.array([np.inf])
    if estimator == "switch_dr":
        return np.r_[np.inf, 1.0, np.unique(np.quantile(large, np.linspace(0, 1, 21)))]
    return np.r_[np.inf, np.geomspace(1.0, large.max(), 25) ** 2]


def _shrinkage(
    estimator: Estimator,
    w: FloatArray,
    residual: FloatArray,
    direct: FloatArray,
    tuning: float | None,
) -> _Estimate:
    """switch_dr / dros at ``tuning``, or at the grid value of least estimated MSE."""

    def at(h: float) -> _Estimate:
        w_h = _shrunk(estimator, w, h)
        return _Estimate(direct + w_h * residual, (w - w_h) * residual, h)

    def estimated_mse(e: _Estimate) -> float:  # squared bias estimate + variance of the mean
        return float(e.dropped.mean() ** 2 + e.contributions.var(ddof=1) / w.size)

    candidates = _grid(estimator, w) if tuning is None else [tuning]
    # min keeps the first of equals: inf (= dr) unless shrinking is estimated to pay.
    return min((at(float(h)) for h in candidates), key=estimated_mse)


def _contributions(
    matrix: FloatArray,
    data: _Log,
    estimator: Estimator,
    mu: FloatArray | None,
    cost: FloatArray,
    tuning: float | None = None,
) -> _Estimate:
    rows = np.arange(data.logged.size)
    w = matrix[rows, data.logged] / data.propensity
    y = data.outcome
    policy_cost = matrix @ cost
    if estimator == "ipw":
        return _plain(w * y - policy_cost)
    if estimator == "snipw":
        w_bar = w.mean()
        if w_bar == 0:  # the policy agrees with no logged order: nothing to learn from
            return _plain(np.full(y.shape, np.nan))
        v = float(np.sum(w * y) / np.sum(w))
        # Delta method: the influence of order i on sum(w y) / sum(w) is w_i (y_i - v) / mean(w).
        return _plain(v + w * (y - v) / w_bar - policy_cost)
    if mu is None:
        raise ConfigError(
            f"estimator {estimator!r} needs mu, the predicted outcome under every arm"
        )
    direct = (matrix * mu).sum(axis=1) - policy_cost
    residual = y - mu[rows, data.logged]
    if estimator == "dr":
        return _plain(direct + w * residual)
    return _shrinkage(estimator, w, residual, direct, tuning)


def _summary(contributions: FloatArray, dropped: FloatArray) -> tuple[float, float, float, float]:
    """Value, se and 95% interval; for switch_dr / dros the interval is DR's holding the value."""
    value = float(contributions.mean())
    se = float(contributions.std(ddof=1) / np.sqrt(contributions.size))
    dr = contributions + dropped  # DR's contributions (the same array when nothing is dropped)
    center, half = float(dr.mean()), Z95 * float(dr.std(ddof=1) / np.sqrt(dr.size))
    return value, se, min(value, center - half), max(value, center + half)


@dataclass(frozen=True, eq=False)
class _Setup:
    """The log, outcome model, costs and policies read once, shared by every estimate."""

    data: _Log
    mu: FloatArray | None
    cost: FloatArray
    matrices: dict[str, FloatArray]

    def estimate(self, name: str, estimator: Estimator, tuning: float | None = None) -> _Estimate:
        check_option("estimator", estimator, ESTIMATORS)
        matrix = self.matrices[name]
        return _contributions(matrix, self.data, estimator, self.mu, self.cost, tuning)


def _setup(
    log: pd.DataFrame,
    policies: Mapping[str, PolicyLike],
    outcome: str,
    mu: pd.DataFrame | None,
    costs: Mapping[str, float] | None,
) -> _Setup:
    chosen: set[str] = set()
    for policy in policies.values():
        labels = policy.columns if isinstance(policy, pd.DataFrame) else np.asarray(policy)
        chosen |= {str(a) for a in np.unique(np.asarray(labels).astype(str))}
    data = _read_log(log, outcome, None if mu is None else list(mu.columns), sorted(chosen))
    mu_matrix = None
    if mu is not None:
        mu_matrix = _aligned(mu, "mu", data).to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(mu_matrix).all(axis=1))
        if bad.size:
            raise SchemaError(
                f"mu must be finite; NaN or infinite at {describe_rows(data.index[bad])}"
            )
    return _Setup(
        data=data,
        mu=mu_matrix,
        cost=_cost_vector(costs, data.arms),
        matrices={name: _policy_matrix(p, data) for name, p in policies.items()},
    )


def policy_value(
    log: pd.DataFrame,
    policy: PolicyLike,
    *,
    estimator: Estimator = "dr",
    outcome: str = "revenue",
    mu: pd.DataFrame | None = None,
    costs: Mapping[str, float] | None = None,
    name: str = "policy",
    tuning: float | None = None,
) -> PolicyValue:
    """Estimate one policy's mean value per order from ``log``, net of ``costs``.

    Parameters
    ----------
    log
        Columns ``arm``, ``outcome`` and ``propensity`` (probability of the logged arm).
    policy
        One arm label per row of ``log`` (array-like), or a DataFrame of probabilities indexed
        like ``log`` with one column per arm.
    estimator
        ``"ipw"``, ``"snipw"``, ``"dr"``, ``"switch_dr"`` or ``"dros"`` (the last three need
        ``mu``).
    mu
        Predicted ``outcome`` under every arm: DataFrame indexed like ``log``, one column per
        arm; its columns are then the only arms allowed.
    costs
        Cost of one use of an arm; arms not named cost nothing.
    tuning
        ``switch_dr``'s ``tau`` or ``dros``'s ``lambda`` (>= 0; ``inf`` gives ``dr``) instead of
        the value chosen from the data.
    """
    if tuning is not None and (estimator not in _TUNED or not tuning >= 0):
        raise ConfigError(
            f"tuning must be a number >= 0 for estimators {list(_TUNED)}; got {tuning!r} "
            f"with estimator {estimator!r}"
        )
    setup = _setup(log, {name: policy}, outcome, mu, costs)
    estimate = setup.estimate(name, estimator, tuning)
    return PolicyValue(
        name,
        estimator,
        *_summary(estimate.contributions, estimate.dropped),
        estimate.contributions.size,
        estimate.tuning,
    )


def baseline_policies(
    arms: Sequence[str], n: int, control: str = "control"
) -> dict[str, NDArray[np.str_]]:
    """The reference policies ``treat_none`` and ``treat_all_<arm>`` for every treatment arm."""
    if control not in arms:
        raise ConfigError(f"control arm {control!r} is not among the arms {list(arms)}")
    policies = {"treat_none": np.full(n, control)}
    policies.update({f"treat_all_{arm}": np.full(n, arm) for arm in arms if arm != control})
    return policies


@dataclass(frozen=True, eq=False)
class PolicyComparison:
    """Several named policies valued on one log, each against any other, paired.

    Per-order contributions are computed once per policy and estimator, so a difference to
    any baseline (:meth:`versus`) averages the per-order differences of the two policies'
    contributions: its interval accounts for their being measured on the same orders (it is
    much narrower than combining the two intervals as if independent). For ``switch_dr`` and
    ``dros`` each policy keeps its own tuned hyperparameter (:meth:`tuning`), and the interval of
    a difference is DR's for that difference, widened if needed to hold it.
    """

    setup: _Setup
    estimators: tuple[Estimator, ...]
    control: str
    _memo: dict[tuple[str, Estimator], _Estimate] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def policies(self) -> tuple[str, ...]:
        """The names of the policies, in the order given."""
        return tuple(self.setup.matrices)

    def contributions(self, name: str, estimator: Estimator) -> FloatArray:
        """Per-order contributions of policy ``name`` to its ``estimator`` value."""
        return self._cached(name, estimator).contributions

    def tuning(self, name: str, estimator: Estimator) -> float:
        """The ``tau`` (``switch_dr``) or ``lambda`` (``dros``) chosen for policy ``name``."""
        check_option("estimator", estimator, _TUNED)
        chosen = self._cached(name, estimator).tuning
        assert chosen is not None  # every switch_dr / dros estimate has one
        return chosen

    def versus(self, baseline: str) -> pd.DataFrame:
        """Every policy's value and its paired difference to ``baseline``.

        Returns
        -------
        pd.DataFrame
            One row per policy and estimator: ``policy``, ``estimator``, ``value``, ``se``,
            ``ci_lower``, ``ci_upper`` (mean value per order net of costs, normal 95%),
            ``diff``, ``diff_se``, ``diff_ci_lower``, ``diff_ci_upper`` (against
            ``baseline``), ``treated_share`` (expected share of orders given a non-control
            arm), ``cost`` (mean cost per order), ``n_matched`` (expected number of logged
            orders whose arm the policy would also pick: the orders IPW learns from) and ``n``.
        """
        if baseline not in self.setup.matrices:
            raise ConfigError(
                f"baseline policy {baseline!r} is not among the policies {list(self.policies)}; "
                "add it (see baseline_policies) or pass baseline=<name>"
            )
        treated = np.array([arm != self.control for arm in self.setup.data.arms])
        rows = []
        for estimator in self.estimators:
            reference = self._cached(baseline, estimator)
            for name, matrix in self.setup.matrices.items():
                own = self._cached(name, estimator)
                value, se, lower, upper = _summary(own.contributions, own.dropped)
                diff, diff_se, diff_lower, diff_upper = _summary(
                    own.contributions - reference.contributions, own.dropped - reference.dropped
                )
                rows.append(
                    {
                        "policy": name,
                        "estimator": estimator,
                        "value": value,
                        "se": se,
                        "ci_lower": lower,
                        "ci_upper": upper,
                        "diff": diff,
                        "diff_se": diff_se,
                        "diff_ci_lower": diff_lower,
                        "diff_ci_upper": diff_upper,
                        "treated_share": float(matrix[:, treated].sum(axis=1).mean()),
                        "cost": float((matrix @ self.setup.cost).mean()),
                        "n_matched": float(
                            matrix[np.arange(len(matrix)), self.setup.data.logged].sum()
                        ),
                        "n": len(matrix),
                    }
                )
        return pd.DataFrame(rows)

    def variance_share(
        self, name: str, baseline: str, rows: NDArray[np.bool_], estimator: Estimator = "dr"
    ) -> float:
        """The share of the variance of ``name`` minus ``baseline`` (paired) that ``rows`` carry.

        The variance of a mean of per-order contributions is the sum of their squared
        deviations: this is the part of that sum from ``rows`` (for example, the orders a
        policy explored, whose large weights widen the interval most).
        """
        diff = self.contributions(name, estimator) - self.contributions(baseline, estimator)
        squares = (diff - diff.mean()) ** 2
        total = float(squares.sum())
        return float(squares[np.asarray(rows, dtype=bool)].sum()) / total if total > 0 else 0.0

    def best(self, among: Sequence[str], estimator: Estimator = "dr") -> str:
        """The policy of highest ``estimator`` value among ``among``."""
        values = [float(self._cached(name, estimator).contributions.mean()) for name in among]
        return among[int(np.argmax(values))]

    def _cached(self, name: str, estimator: Estimator) -> _Estimate:
        key = (name, estimator)
        if key not in self._memo:
            self._memo[key] = self.setup.estimate(name, estimator)
        return self._memo[key]


def value_policies(
    log: pd.DataFrame,
    policies: Mapping[str, PolicyLike],
    *,
    outcome: str = "revenue",
    mu: pd.DataFrame | None = None,
    costs: Mapping[str, float] | None = None,
    estimators: Sequence[Estimator] = DEFAULT_ESTIMATORS,
    control: str = "control",
) -> PolicyComparison:
    """Value several named policies on one log (see :class:`PolicyComparison`).

    ``estimators`` are those of :data:`ESTIMATORS` to tabulate (default ``ipw``, ``snipw``,
    ``dr``).
    """
    for estimator in estimators:
        check_option("estimator", estimator, ESTIMATORS)
    setup = _setup(log, policies, outcome, mu, costs)
    return PolicyComparison(setup, tuple(estimators), control)


def compare_policies(
    log: pd.DataFrame,
    policies: Mapping[str, PolicyLike],
    *,
    baseline: str = "treat_none",
    **options: Any,
) -> pd.DataFrame:
    """Value several named policies on one log, each also as a difference to ``baseline``.

    ``options`` are those of :func:`value_policies`; the table is
    :meth:`PolicyComparison.versus` ``baseline``.
    """
    return value_policies(log, policies, **options).versus(baseline)
