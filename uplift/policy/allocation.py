"""Allocation of orders to arms under per-arm capacities and a total budget: exact with
capacities alone, within a printed bound of the integer optimum when a budget binds.

The problem, with ``x[o, a]`` = 1 when order ``o`` gets arm ``a``::

    maximise   sum_oa value[o, a] x[o, a]
    subject to sum_a x[o, a] <= 1                 (at most one arm per order; none = control)
               sum_o x[o, a] <= capacity[a]       (per-arm capacity, number of orders)
               sum_oa cost[o, a] x[o, a] <= budget

With capacities alone the constraint matrix is totally unimodular, so the linear program has
an integral optimum. We solve it through its Lagrangian dual, one price per constrained arm::

    D(p) = sum_o max(0, max_a value[o, a] - p[a]) + sum_a capacity[a] p[a],   p >= 0.

``D`` is a polyhedral L-natural-convex function (a sum of unit-demand terms), so a price vector
is optimal as soon as no direction ``+1_S`` or ``-1_S`` (``S`` a set of constrained arms)
decreases it (Murota, *Discrete Convex Analysis*, 2003, thm. 7.14; the directional derivative
is again L-natural-convex with integral data). We walk down the steepest such direction with
an exact line search (a quantile of the orders' reduced-value gaps) until none is left, then
resolve ties among the orders that sit exactly at a price (a tiny transportation problem over
groups of tied orders) so that every arm with a positive price is filled to capacity. The
result is primal feasible with value equal to ``D(p)``: exact, with a certificate.

A budget adds a price ``mu`` on cost. ``phi(mu) = min_p D(p, mu)`` is convex and piecewise
linear in ``mu``; we minimise it by a one-dimensional cutting-plane search, which ends at the
exact kink. There the LP optimum may split one or a few orders fractionally; we round down by
taking the Lagrangian solution on the feasible side of the kink (``mu`` just above it), then
move orders tied at the kink to the overspending side's arm while the budget and capacities
allow (so a group of identical orders is split, not dropped whole). The value is below the LP
optimum by at most the reported ``upper_bound - objective``, an a posteriori certificate.
Because a basic LP optimum has at most one fractional order per coupling constraint, in
general position this gap is at most the net value of ``number of capacitated arms + 1``
orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from uplift.exceptions import ConfigError

__all__ = ["MAX_CONSTRAINED_ARMS", "TIE_TOLERANCE", "Allocation", "allocate"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Relative tolerance for "two reduced values are equal": far above float rounding of sums of
# prices (about 1e-16 per operation) and far below any meaningful money difference.
TIE_TOLERANCE = 1e-10
MAX_PRICE_STEPS = 10_000
MAX_BUDGET_STEPS = 100
MAX_CONSTRAINED_ARMS = 16


@dataclass(frozen=True)
class Allocation:
    """The optimal arm per order and the prices that certify it.

    ``choice`` holds 0 for control and ``j + 1`` for column ``j`` of the value matrix.
    ``prices`` is the shadow price of each arm's capacity (0 where it does not bind);
    ``budget_price`` the one of the budget. ``objective`` is the total net value of the choice,
    ``upper_bound`` the dual bound on the LP optimum (equal to it up to float rounding without a
    budget).
    """

    choice: IntArray
    prices: FloatArray
    budget_price: float
    objective: float
    upper_bound: float
    budget_used: float


@dataclass(frozen=True)
class _Lagrangian:
    mu: float
    prices: FloatArray
    choice: IntArray
    dual: float
    spent: float


def allocate(
    value: FloatArray,
    cost: FloatArray,
    capacity: FloatArray,
    budget: float = math.inf,
) -> Allocation:
    """Solve the allocation exactly (see the module docstring).

    ``value`` and ``cost`` are (orders x arms) without the control arm; ``capacity`` has one
    entry per arm, ``inf`` when the arm is unlimited. Inputs are validated by the caller.
    """
    n, k = value.shape
    # Arms by rows: reductions over arms then run over contiguous rows, several times faster.
    value, cost = np.ascontiguousarray(value.T), np.ascontiguousarray(cost.T)
    capacity = np.where(capacity >= n, np.inf, np.floor(capacity))
    if int(np.isfinite(capacity).sum()) > MAX_CONSTRAINED_ARMS:
        raise ConfigError(f"at most {MAX_CONSTRAINED_ARMS} arms can have a capacity")
    tol = TIE_TOLERANCE * max(1.0, float(np.abs(value).max(initial=0.0)))
    start = _lagrangian(value, cost, capacity, budget, 0.0, np.zeros(k), tol)
    if not math.isfinite(budget) or start.spent <= budget:
        best, bound = start, start.dual
    else:
        best, bound = _budget_search(value, cost, capacity, budget, start, tol)
    chosen = best.choice > 0
    rows = np.flatnonzero(chosen)
    objective = float(value[best.choice[rows] - 1, rows].sum())
    return Allocation(
        choice=best.choice,
        prices=best.prices,
        budget_price=best.mu,
        objective=objective,
        upper_bound=bound,
        budget_used=best.spent,
    )


def _lagrangian(
    value: FloatArray,
    cost: FloatArray,
    capacity: FloatArray,
    budget: float,
    mu: float,
    start: FloatArray,
    tol: float,
) -> _Lagrangian:
    """Exact capacity prices and a tie-resolved choice for a fixed budget price ``mu``."""
    effective = value - mu * cost if mu > 0 else value
    prices = solve_prices(effective, capacity, start, tol)
    choice = resolve_ties(effective, capacity, prices, tol)
    rows = np.flatnonzero(choice > 0)
    spent = float(cost[choice[rows] - 1, rows].sum())
    finite = np.isfinite(capacity)
    reduced_best = np.maximum((effective - prices[:, None]).max(axis=0), 0.0)
    dual = float(reduced_best.sum() + capacity[finite] @ prices[finite])
    if mu > 0:
        dual += mu * budget
    return _Lagrangian(mu=mu, prices=prices, choice=choice, dual=dual, spent=spent)


def solve_prices(
    value: FloatArray, capacity: FloatArray, start: FloatArray, tol: float
) -> FloatArray:
    """Minimise the dual ``D(p)`` exactly by steepest descent over directions ``+-1_S``.

    ``value`` is (arms x orders), as in every function below.
    """
    arms = np.flatnonzero(np.isfinite(capacity))
    prices = start.astype(np.float64).copy()
    prices[~np.isfinite(capacity)] = 0.0
    if arms.size == 0:
        return prices
    members = _subset_members(arms.size)
    subset_capacity = members @ capacity[arms]
    norms = np.sqrt(members.sum(axis=1))
    for _ in range(MAX_PRICE_STEPS):
        reduced = value - prices[:, None]
        up, down = _directional_derivatives(reduced, capacity, arms, members, tol)
        down[(members & (prices[arms] <= 0)).any(axis=1)] = np.inf  # prices stay >= 0
        if min(up.min(), down.min()) > -0.5:  # whole numbers: no descent direction is left
            return prices
        # Steepest in the Euclidean sense (per unit length of 1_S): the unnormalised choice
        # favours large sets and zigzags for hundreds of steps when many capacities bind.
        up, down = up / norms, down / norms
        rising = bool(up.min() <= down.min())
        subset = int(np.argmin(up if rising else down))
        in_set = np.zeros(len(value), dtype=bool)
        in_set[arms[members[subset]]] = True
        step = _line_search(reduced, in_set, int(subset_capacity[subset]), rising, prices)
        prices[in_set] = np.maximum(prices[in_set] + (step if rising else -step), 0.0)
    raise RuntimeError(f"capacity prices did not converge in {MAX_PRICE_STEPS} steps")


def _subset_members(m: int) -> NDArray[np.bool_]:
    """Row ``s - 1`` tells which of the ``m`` constrained arms belong to the subset ``s``."""
    subsets = np.arange(1, 2**m)
    return ((subsets[:, None] >> np.arange(m)) & 1).astype(bool)


def _tie_masks(
    reduced: FloatArray, capacity: FloatArray, arms: IntArray, tol: float
) -> tuple[IntArray, NDArray[np.bool_]]:
    """Per order: bit mask of constrained arms at its best reduced value, and whether control
    or an unlimited arm is also at it (then the order can always leave the constrained arms)."""
    threshold = np.maximum(reduced.max(axis=0), 0.0) - tol
    outside = threshold <= 0
    for arm in np.flatnonzero(~np.isfinite(capacity)):
        outside |= reduced[arm] >= threshold
    mask = np.zeros(reduced.shape[1], dtype=np.int64)
    for bit, arm in enumerate(arms):
        mask |= (reduced[arm] >= threshold).astype(np.int64) << bit
    return mask, outside


def _directional_derivatives(
    reduced: FloatArray,
    capacity: FloatArray,
    arms: IntArray,
    members: NDArray[np.bool_],
    tol: float,
) -> tuple[FloatArray, FloatArray]:
    """``D'(p; +1_S)`` and ``D'(p; -1_S)`` for every non-empty set ``S`` of constrained arms.

    Raising the prices of ``S`` loses the orders whose best arms all lie in ``S``; lowering
    them gains every order with a best arm in ``S``.
    """
    mask, outside = _tie_masks(reduced, capacity, arms, tol)
    size = 2**arms.size
    only_inside = _subset_sums(np.bincount(mask[~outside], minlength=size))
    touching = _subset_sums(np.bincount(mask, minlength=size))
    subsets = np.arange(1, size)
    cap = members @ capacity[arms]
    up = cap - only_inside[subsets]
    down = (reduced.shape[1] - touching[(size - 1) ^ subsets]) - cap
    return up.astype(np.float64), down.astype(np.float64)


def _subset_sums(counts: IntArray) -> IntArray:
    """Zeta transform: ``out[S] = sum of counts[M] over every M contained in S``."""
    out = counts.copy()
    size = len(out)
    bit = 1
    while bit < size:
        has_bit = (np.arange(size) & bit) != 0
        out[has_bit] += out[np.flatnonzero(has_bit) ^ bit]
        bit <<= 1
    return out


def _line_search(
    reduced: FloatArray, in_set: NDArray[np.bool_], cap: int, rising: bool, prices: FloatArray
) -> float:
    """Exact minimiser of ``D`` along ``+1_S`` (rising) or ``-1_S``.

    Along ``+1_S`` an order keeps an arm of ``S`` while the step is below its gap ``g`` (best
    reduced value inside ``S`` minus best outside, control included), so ``D`` falls while more
    than ``cap`` gaps exceed the step: the minimiser is the ``(cap + 1)``-th largest gap.
    Along ``-1_S`` it is symmetric, and the step stops where a price reaches zero.
    """
    inside = reduced[in_set].max(axis=0)
    outside = np.maximum(reduced[~in_set].max(axis=0, initial=-np.inf), 0.0)
    gap = inside - outside
    n = len(gap)
    if rising:
        return float(np.partition(gap, n - cap - 1)[n - cap - 1])
    floor = float(prices[in_set].min())
    if cap > n:
        return floor
    return min(float(np.partition(-gap, cap - 1)[cap - 1]), floor)


def resolve_ties(
    value: FloatArray, capacity: FloatArray, prices: FloatArray, tol: float
) -> IntArray:
    """The arm per order at optimal prices: its best reduced value, with ties split so that
    every arm with a positive price is exactly full and no capacity is exceeded."""
    n = value.shape[1]
    reduced = value - prices[:, None]
    arms = np.flatnonzero(np.isfinite(capacity))
    mask, outside = _tie_masks(reduced, capacity, arms, tol)
    fallback = _best_unlimited(value, capacity)
    choice = np.where(outside, fallback, 0)
    single = ~outside & (mask & (mask - 1) == 0)
    positions = np.log2(np.maximum(mask, 1)).astype(np.int64)
    choice[single] = arms[positions[single]] + 1
    ambiguous = np.flatnonzero(~single & (mask > 0))
    if ambiguous.size:
        fixed = np.bincount(positions[single], minlength=arms.size)
        room = capacity[arms] - fixed
        _split_groups(choice, ambiguous, mask, outside, arms, room, prices[arms] > 0)
    if np.any(np.bincount(choice, minlength=len(value) + 1)[arms + 1] > capacity[arms]):
        raise RuntimeError(f"tie resolution exceeded a capacity ({n} orders)")
    return choice


def _best_unlimited(value: FloatArray, capacity: FloatArray) -> IntArray:
    """Best of control and the unlimited arms per order (control wins ties: no action)."""
    unlimited = np.flatnonzero(~np.isfinite(capacity))
    if unlimited.size == 0:
        return np.zeros(value.shape[1], dtype=np.int64)
    options = np.vstack([np.zeros((1, value.shape[1])), value[unlimited]])
    best = options.argmax(axis=0)
    return np.where(best > 0, unlimited[np.maximum(best - 1, 0)] + 1, 0).astype(np.int64)


def _split_groups(
    choice: IntArray,
    ambiguous: IntArray,
    mask: IntArray,
    outside: NDArray[np.bool_],
    arms: IntArray,
    room: FloatArray,
    must_fill: NDArray[np.bool_],
) -> None:
    """Assign tied orders, grouped by their set of best arms, by a small transportation LP.

    Its matrix is a network matrix, so the simplex vertex it returns is integral. It uses the
    arms as little as the prices allow, so an order tied between an arm and control stays on
    control unless that arm's capacity must be filled.
    """
    keys = mask[ambiguous] * 2 + outside[ambiguous]
    groups, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    variables = [
        (g, j)
        for g, key in enumerate(groups)
        for j in [*[j for j in range(arms.size) if (key >> 1) >> j & 1], *([-1] * (key & 1))]
    ]
    n_var = len(variables)
    a_eq = np.zeros((len(groups), n_var))
    a_arm = np.zeros((arms.size, n_var))
    for v, (g, j) in enumerate(variables):
        a_eq[g, v] = 1.0
        if j >= 0:
            a_arm[j, v] = 1.0
    # Imported here: SciPy's optimisers take 0.4 s to import, which a queue without ties never
    # needs and `uplift rank` spends while it predicts (see uplift.cli.policy).
    from scipy.optimize import linprog  # noqa: PLC0415

    fill = np.flatnonzero(must_fill)
    result = linprog(
        c=np.array([0.0 if j < 0 else 1.0 for _, j in variables]),
        A_ub=np.vstack([a_arm, -a_arm[fill]]),
        b_ub=np.concatenate([room, -room[fill]]),
        A_eq=a_eq,
        b_eq=counts.astype(np.float64),
        bounds=(0, None),
        method="highs-ds",
    )
    if result.status != 0:
        raise RuntimeError(f"tie resolution failed: {result.message}")
    amounts = np.rint(result.x).astype(np.int64)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    taken = starts[:-1].copy()
    for (g, j), amount in zip(variables, amounts, strict=True):
        rows = ambiguous[order[taken[g] : taken[g] + amount]]
        choice[rows] = arms[j] + 1 if j >= 0 else choice[rows]
        taken[g] += amount


def _budget_search(
    value: FloatArray,
    cost: FloatArray,
    capacity: FloatArray,
    budget: float,
    low: _Lagrangian,
    tol: float,
) -> tuple[_Lagrangian, float]:
    """Minimise ``phi(mu)`` by cutting planes between a budget price that overspends (``low``)
    and one that does not (``high``); return the feasible side of the optimal kink and the
    lowest dual bound seen."""
    positive = cost > 0
    ceiling = float((value[positive] / cost[positive]).max(initial=0.0)) * 2.0 + 1.0
    high = _lagrangian(value, cost, capacity, budget, ceiling, low.prices, tol)
    for _ in range(MAX_BUDGET_STEPS):
        slope_low, slope_high = budget - low.spent, budget - high.spent
        if slope_high - slope_low <= 0:
            break
        mu = (high.dual - low.dual + slope_low * low.mu - slope_high * high.mu) / (
            slope_low - slope_high
        )
        if not low.mu < mu < high.mu:
            break
        floor = low.dual + slope_low * (mu - low.mu)
        point = _lagrangian(value, cost, capacity, budget, mu, low.prices, tol)
        if point.spent <= budget:
            high = point
        else:
            low = point
        if point.dual - floor <= tol * max(1.0, abs(point.dual)):
            if point is low:  # optimal kink found from the overspending side: step past it
                nudged = mu + max(mu, 1.0) * 1e-9
                above = _lagrangian(value, cost, capacity, budget, nudged, point.prices, tol)
                high = above if above.spent <= budget else high
            break
    return _fill_budget(value, cost, capacity, budget, high, low), min(low.dual, high.dual)


def _fill_budget(
    value: FloatArray,
    cost: FloatArray,
    capacity: FloatArray,
    budget: float,
    high: _Lagrangian,
    low: _Lagrangian,
) -> _Lagrangian:
    """Spend what the feasible side of the kink leaves: move orders to the overspending side's
    arm, best value per unit of extra cost first, while the budget and capacities allow.

    At the kink the two sides differ only in orders tied at the budget's price; taken whole,
    a group of identical orders would be all in or all out, and 1,000 identical orders with
    room in the budget for 300 would all stay untreated.
    """
    rows = np.flatnonzero(low.choice != high.choice)
    if rows.size == 0:
        return high

    def picked(choice: IntArray, what: FloatArray) -> FloatArray:
        arm = choice[rows]
        return np.where(arm > 0, what[np.maximum(arm - 1, 0), rows], 0.0)

    gain = picked(low.choice, value) - picked(high.choice, value)
    extra = picked(low.choice, cost) - picked(high.choice, cost)
    useful = gain > 0
    rows, gain, extra = rows[useful], gain[useful], extra[useful]
    order = np.lexsort((rows, -gain / np.maximum(extra, 1e-300)))
    rows, extra = rows[order], extra[order]
    # Longest prefix within the budget and, arm by arm, within the room left.
    fits = np.cumsum(extra) <= budget - high.spent + 1e-9 * max(1.0, budget)
    counts = np.bincount(high.choice, minlength=capacity.size + 1)[1:]
    for arm in np.flatnonzero(np.isfinite(capacity)):
        net = np.cumsum((low.choice[rows] == arm + 1).astype(np.int64)) - np.cumsum(
            (high.choice[rows] == arm + 1).astype(np.int64)
        )
        fits &= counts[arm] + net <= capacity[arm]
    taken = rows[: int(np.argmin(fits)) if not fits.all() else rows.size]
    if taken.size == 0:
        return high
    choice = high.choice.copy()
    choice[taken] = low.choice[taken]
    treated = np.flatnonzero(choice > 0)
    spent = float(cost[choice[treated] - 1, treated].sum())
    return _Lagrangian(mu=high.mu, prices=high.prices, choice=choice, dual=high.dual, spent=spent)
