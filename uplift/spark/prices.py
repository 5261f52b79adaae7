"""Shadow prices of the capacitated arms and of the budget, found on Spark and certified exact.

The allocation of :mod:`uplift.policy.allocation` is a linear program whose dual has one price
per capacitated arm (and one on cost when a budget binds); given the prices, every order takes
the arm of largest ``value - budget_price * cost - price``, or control when none is above 0.
So the orders need not meet: a partition assigns its orders alone once the driver knows the
prices. The driver finds them in a few passes over the data:

1. **Estimate.** The exact allocation of a uniform sample of the orders (capacities and budget
   scaled by the sample's share) gives a centre ``(p, mu)`` close to the optimal prices.
2. **Margins (one pass).** Each order's choice at the centre, and the scale ``t`` of the
   largest box of prices ``|p' - p| <= t, |mu' - mu| <= t * eta`` in which that choice cannot
   change (its best option beats every other by more than the prices can move, plus twice
   the tie tolerance). Counts, costs and values per arm are summed per power of two of
   ``t``: from them the driver picks the largest box whose *marginal* orders (``t`` below the
   box) number at most ``margin_orders``; all other orders are *fixed* at their choice.
3. **Exact solve (one pass).** The marginal orders are collected, sorted by order_id, and
   solved by :func:`uplift.policy.allocation.allocate` itself, with each arm's capacity and
   the budget less what the fixed orders use. Inside the box the fixed orders' part of the
   dual is linear, so this small problem's dual equals the whole problem's there and is a
   lower bound outside it. When its optimal prices lie well inside the box they are optimal
   for the whole problem (a local minimum of a convex function), the fixed orders keep their
   choice at them, and the marginal orders' solution completes an optimal allocation:
   exact, with the same certificate (objective and dual bound) as on one machine. Otherwise
   the search starts again from those prices (or a larger sample); it gives up after
   ``MAX_ROUNDS`` with an error rather than return an uncertified queue.

Ties are resolved where the single-machine allocation resolves them: orders tied at a price
are within the tie tolerance of it, hence marginal, hence solved by the same code on the
driver, in order_id order. With a binding budget, the rounding at the budget's kink
(``_fill_budget``) happens in that same call. The tie tolerance is the same too: a dummy
order worth ``-max|value|`` (never chosen, costless) gives the small problem the whole
problem's largest value, on which :func:`allocate` scales its tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from uplift.exceptions import ConfigError
from uplift.policy.allocation import (
    MAX_CONSTRAINED_ARMS,
    TIE_TOLERANCE,
    Allocation,
    allocate,
)
from uplift.spark.session import quiet_conversions
from uplift.spark.values import cost_column, value_column

__all__ = ["MAX_ROUNDS", "Prices", "choice_column", "priced_choice", "solve_prices"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Rounds of (estimate, margins, exact solve) before the search gives up.
MAX_ROUNDS = 5
# Boxes are 2**i wide, i in [-_SCALES, _SCALES]: from 1e-18 to 1e18 currency units.
_SCALES = 60
#: The solved prices must lie within this share of the box's half-width from its centre.
_INSIDE = 0.5
_CHOICE, _SCALE, _BUCKET = "_choice", "_scale", "_bucket"


@dataclass(frozen=True)
class Prices:
    """The optimal prices, the orders the driver decided, and the allocation's certificate.

    ``center``/``center_budget_price`` are the prices every partition decides the fixed orders
    with; ``decided`` holds ``order_id`` and ``choice`` (0 for control, ``j + 1`` for arm
    ``j``) of the marginal orders. ``prices`` and ``budget_price`` are the exact optimum's, as
    :func:`allocate` reports them. ``objective``, ``upper_bound`` and ``spent`` are the net
    value, dual bound and cost of the allocation of all the orders given.
    """

    prices: FloatArray
    budget_price: float
    center: FloatArray
    center_budget_price: float
    decided: pd.DataFrame
    objective: float
    upper_bound: float
    spent: float
    rounds: int
    marginal: int


def solve_prices(
    orders: DataFrame,
    *,
    arms: int,
    capacity: FloatArray,
    budget: float,
    count: int,
    largest: float,
    sample_orders: int,
    margin_orders: int,
    seed: int = 0,
) -> Prices:
    """The allocation of ``orders`` (``order_id``, ``value_j``, ``cost_j``) within ``capacity``
    (per arm, ``inf`` when unlimited) and ``budget`` (``inf``: none).

    ``count`` is the number of orders and ``largest`` their largest absolute net value.
    """
    capacity = np.where(capacity >= count, np.inf, np.floor(capacity))
    limited = np.isfinite(capacity)
    if int(limited.sum()) > MAX_CONSTRAINED_ARMS:
        raise ConfigError(f"at most {MAX_CONSTRAINED_ARMS} arms can have a capacity")
    tol = TIE_TOLERANCE * max(1.0, largest)
    if count <= margin_orders:
        return _solve_all(orders, arms, capacity, budget, largest)
    if not limited.any() and not math.isfinite(budget):
        zeros = np.zeros(arms)
        return _unconstrained(orders, arms, zeros)
    center, center_mu, eta, wanted = np.zeros(arms), 0.0, 0.0, sample_orders
    estimate_again = True
    for round_ in range(1, MAX_ROUNDS + 1):
        if estimate_again:
            estimate, eta = _estimate(orders, arms, capacity, budget, count, wanted, seed)
            center, center_mu = estimate.prices, estimate.budget_price
            wanted *= 4
        marked = _marked(orders, arms, center, center_mu, limited, eta, tol)
        try:
            margins = _margins(marked)
            scale = _choose_scale(margins, margin_orders)
            fixed = margins[margins[_BUCKET] > scale]
            room, left = _residual(fixed, arms, capacity, budget)
            # Fixed orders that overfill an arm or the budget: the centre's prices are too low.
            estimate_again = bool((room < 0).any() or left < 0)
            if estimate_again:
                continue
            marginal = _collect(marked, arms, scale)
        finally:
            marked.unpersist()
        solved = _solve_marginal(marginal, arms, room, left, largest)
        half = _INSIDE * 2.0**scale
        inside = bool(np.all(np.abs(solved.prices - center)[limited] < half)) and (
            not math.isfinite(budget) or abs(solved.budget_price - center_mu) < half * eta
        )
        if inside:
            chosen = fixed[fixed[_CHOICE] > 0]
            bound = solved.upper_bound
            if math.isfinite(budget):
                # allocate's bound with a budget is the lower of two duals of its search, one
                # of which may lie outside the box (where the small problem's dual is below
                # the whole one's): the dual at the solved prices is a bound of the whole.
                bound = _dual(marginal, arms, room, left, solved)
            return Prices(
                prices=solved.prices,
                budget_price=solved.budget_price,
                center=center,
                center_budget_price=center_mu,
                decided=pd.DataFrame(
                    {"order_id": marginal["order_id"].to_numpy(), "choice": solved.choice}
                ),
                objective=solved.objective + float(chosen["value"].sum()),
                upper_bound=bound + float(chosen["value"].sum()),
                spent=solved.budget_used + float(chosen["cost"].sum()),
                rounds=round_,
                marginal=len(marginal),
            )
        # Outside the box: the small problem's optimum is the better centre.
        center, center_mu = solved.prices, solved.budget_price
    raise RuntimeError(
        f"the shadow prices were not certified in {MAX_ROUNDS} rounds; raise margin_orders "
        f"(now {margin_orders:,}) so that more orders near the prices are solved exactly"
    )


# --------------------------------------------------------------------------------------------
# The choice at given prices, as a Spark column


def _reduced(j: int, prices: FloatArray, mu: float) -> Column:
    """``(value - mu * cost) - price`` of arm ``j``, in the float operations of allocate."""
    value = F.col(value_column(j))
    effective = value - F.lit(float(mu)) * F.col(cost_column(j)) if mu > 0 else value
    return effective - F.lit(float(prices[j]))


def _argmax(options: list[Column]) -> tuple[Column, Column]:
    """Largest of 0 (control) and ``options``, and its index (control first, then the first
    arm: numpy's argmax over ``[0, options...]``)."""
    best = F.greatest(F.lit(0.0), *options) if options else F.lit(0.0)
    index = F.when(best <= 0.0, F.lit(0))
    for j, option in enumerate(options):
        index = index.when(option == best, F.lit(j + 1))
    return best, index.otherwise(F.lit(0))


def choice_column(arms: int, prices: FloatArray, mu: float) -> Column:
    """The arm (0 control, ``j + 1`` arm ``j``) of largest reduced value at ``prices``."""
    return _argmax([_reduced(j, prices, mu) for j in range(arms)])[1]


def priced_choice(arms: int, prices: FloatArray, mu: float) -> Column:
    """The arm the policy would give at its final prices: ``value - price - mu * cost``, in
    the order of operations of ``uplift rank`` (for orders held out or explored)."""
    options = [
        F.col(value_column(j)) - F.lit(float(prices[j])) - F.lit(float(mu)) * F.col(cost_column(j))
        for j in range(arms)
    ]
    return _argmax(options)[1]


def _with_margins(
    orders: DataFrame,
    arms: int,
    prices: FloatArray,
    mu: float,
    limited: NDArray[np.bool_],
    eta: float,
    tol: float,
) -> DataFrame:
    """Each order's choice at the prices and the scale ``t`` of its robustness box."""
    reduced = {f"_r{j}": _reduced(j, prices, mu) for j in range(arms)}
    frame = orders.withColumns(reduced)
    best, index = _argmax([F.col(f"_r{j}") for j in range(arms)])
    frame = frame.withColumns({"_best": best, _CHOICE: index})
    choice = F.col(_CHOICE)

    def pick(per_arm: list[Column]) -> Column:  # the chosen option's entry (control: 0)
        out = F.lit(0.0)
        for j, entry in enumerate(per_arm):
            out = F.when(choice == j + 1, entry).otherwise(out)
        return out

    moves = [F.lit(1.0 if limited[j] else 0.0) for j in range(arms)]
    costs = [F.col(cost_column(j)) for j in range(arms)]
    frame = frame.withColumns({"_move": pick(moves), "_cost_b": pick(costs)})
    terms = []
    options = [(F.lit(0.0), F.lit(0.0), F.lit(0.0))] + [
        (F.col(f"_r{j}"), moves[j], costs[j]) for j in range(arms)
    ]
    for j, (value, move, cost) in enumerate(options):
        sensitivity = F.col("_move") + move + F.lit(eta) * (F.col("_cost_b") + cost)
        gap = F.col("_best") - value - F.lit(2.0 * tol)
        term = F.when(choice == j, F.lit(math.inf))
        term = term.when(sensitivity > 0, F.greatest(gap / sensitivity, F.lit(0.0)))
        terms.append(term.otherwise(F.lit(math.inf)))
    return frame.withColumn(_SCALE, F.least(*terms) if len(terms) > 1 else terms[0])


def _bucket(scale: Column) -> Column:
    """``ceil(log2(t))`` within the scales: an order is marginal in box ``2**i`` iff its
    bucket is at most ``i``."""
    top = _SCALES + 1
    exponent = F.ceil(F.log2(F.greatest(scale, F.lit(2.0**-_SCALES))))
    return (
        F.when(scale >= F.lit(2.0**_SCALES), F.lit(top))
        .when(scale <= 0.0, F.lit(-top))
        .otherwise(F.least(exponent.cast("int"), F.lit(_SCALES)))
    )


def _marked(
    orders: DataFrame,
    arms: int,
    prices: FloatArray,
    mu: float,
    limited: NDArray[np.bool_],
    eta: float,
    tol: float,
) -> DataFrame:
    """The orders with their choice, bucket, and cost and value at the choice, cached: the
    pass that counts them and the one that collects the marginal ones share the work."""
    frame = _with_margins(orders, arms, prices, mu, limited, eta, tol)
    value = F.lit(0.0)
    for j in range(arms):
        value = F.when(F.col(_CHOICE) == j + 1, F.col(value_column(j))).otherwise(value)
    kept = ["order_id", *(value_column(j) for j in range(arms))]
    kept += [cost_column(j) for j in range(arms)]
    marked = frame.select(
        *kept,
        F.col(_CHOICE),
        _bucket(F.col(_SCALE)).alias(_BUCKET),
        F.col("_cost_b"),
        value.alias("_value_b"),
    )
    return marked.persist(StorageLevel.MEMORY_AND_DISK)


def _margins(marked: DataFrame) -> pd.DataFrame:
    """Per (bucket, choice): orders, their cost and their net value at their choice."""
    grouped = marked.groupBy(_BUCKET, _CHOICE).agg(
        F.count(F.lit(1)).alias("orders"),
        F.sum("_cost_b").alias("cost"),
        F.sum("_value_b").alias("value"),
    )
    with quiet_conversions():
        table = grouped.toPandas()
    return table.astype({_BUCKET: np.int64, _CHOICE: np.int64, "orders": np.int64})


def _choose_scale(margins: pd.DataFrame, margin_orders: int) -> int:
    """The largest box whose marginal orders are at most ``margin_orders``."""
    per_bucket = margins.groupby(_BUCKET)["orders"].sum()
    scales = np.arange(-_SCALES - 1, _SCALES + 1)
    marginal = np.array([per_bucket[per_bucket.index <= i].sum() for i in scales])
    fits = np.flatnonzero(marginal <= margin_orders)
    if fits.size == 0:
        raise ConfigError(
            f"{int(marginal[0]):,} orders are tied at the prices, more than the "
            f"{margin_orders:,} the driver solves exactly; raise margin_orders"
        )
    return int(scales[fits[-1]])


def _residual(
    fixed: pd.DataFrame, arms: int, capacity: FloatArray, budget: float
) -> tuple[FloatArray, float]:
    """Each arm's capacity and the budget less what the fixed orders take."""
    taken = fixed.groupby(_CHOICE)["orders"].sum()
    used = np.array([float(taken.get(j + 1, 0)) for j in range(arms)])
    return capacity - used, budget - float(fixed["cost"].sum())


def _collect(marked: DataFrame, arms: int, scale: int) -> pd.DataFrame:
    """The marginal orders' ids, values and costs, in order_id order (the tie order)."""
    wanted = ["order_id", *(value_column(j) for j in range(arms))]
    wanted += [cost_column(j) for j in range(arms)]
    chosen = marked.filter(F.col(_BUCKET) <= scale).select(*wanted)
    with quiet_conversions():
        table = chosen.toPandas()
    return table.sort_values("order_id", kind="stable").reset_index(drop=True)


def _solve_marginal(
    marginal: pd.DataFrame, arms: int, room: FloatArray, budget: float, largest: float
) -> Allocation:
    """:func:`allocate` on the marginal orders plus a dummy order that carries the tolerance."""
    value = marginal[[value_column(j) for j in range(arms)]].to_numpy(np.float64)
    cost = marginal[[cost_column(j) for j in range(arms)]].to_numpy(np.float64)
    value = np.vstack([value, np.full((1, arms), -max(1.0, largest))])
    cost = np.vstack([cost, np.zeros((1, arms))])
    solved = allocate(value, cost, room, budget)
    return Allocation(
        choice=solved.choice[:-1],
        prices=solved.prices,
        budget_price=solved.budget_price,
        objective=solved.objective,
        upper_bound=solved.upper_bound,
        budget_used=solved.budget_used,
    )


def _dual(
    marginal: pd.DataFrame, arms: int, room: FloatArray, budget: float, solved: Allocation
) -> float:
    """The small problem's dual at ``solved``'s prices, in allocate's float operations."""
    value = marginal[[value_column(j) for j in range(arms)]].to_numpy(np.float64)
    cost = marginal[[cost_column(j) for j in range(arms)]].to_numpy(np.float64)
    mu, prices = solved.budget_price, solved.prices
    effective = value - mu * cost if mu > 0 else value
    best = np.maximum((effective - prices).max(axis=1, initial=-np.inf), 0.0)
    limited = np.isfinite(room) & (prices > 0)
    return float(best.sum() + room[limited] @ prices[limited] + (mu * budget if mu > 0 else 0.0))


def _estimate(
    orders: DataFrame,
    arms: int,
    capacity: FloatArray,
    budget: float,
    count: int,
    wanted: int,
    seed: int,
) -> tuple[Allocation, float]:
    """Prices of a uniform sample's allocation, and the budget price's box scale ``eta``."""
    share = min(1.0, wanted / count)
    columns = [value_column(j) for j in range(arms)] + [cost_column(j) for j in range(arms)]
    with quiet_conversions():
        sample = orders.sample(fraction=share, seed=seed).select(*columns).toPandas()
    value = sample[columns[:arms]].to_numpy(np.float64)
    cost = sample[columns[arms:]].to_numpy(np.float64)
    scaled = len(sample) / count
    positive = cost[cost > 0]
    # A unit of budget price moves a choice by about the typical cost: eta makes both boxes
    # comparable in money.
    eta = 1.0 / float(positive.mean()) if math.isfinite(budget) and positive.size else 0.0
    if len(sample) == 0:
        return allocate(value, cost, capacity, budget), eta
    budget_part = budget * scaled if math.isfinite(budget) else math.inf
    return allocate(value, cost, np.floor(capacity * scaled), budget_part), eta


def _solve_all(
    orders: DataFrame, arms: int, capacity: FloatArray, budget: float, largest: float
) -> Prices:
    """Few orders: all of them are marginal, solved on the driver in one call."""
    wanted = ["order_id", *(value_column(j) for j in range(arms))]
    wanted += [cost_column(j) for j in range(arms)]
    with quiet_conversions():
        table = orders.select(*wanted).toPandas()
    everything = table.sort_values("order_id", kind="stable").reset_index(drop=True)
    solved = _solve_marginal(everything, arms, capacity, budget, largest)
    return Prices(
        prices=solved.prices,
        budget_price=solved.budget_price,
        center=solved.prices,
        center_budget_price=solved.budget_price,
        decided=pd.DataFrame({"order_id": everything["order_id"], "choice": solved.choice}),
        objective=solved.objective,
        upper_bound=solved.upper_bound,
        spent=solved.budget_used,
        rounds=1,
        marginal=len(everything),
    )


def _unconstrained(orders: DataFrame, arms: int, zeros: FloatArray) -> Prices:
    """No capacity binds and no budget: every order takes its best arm, no price needed."""
    frame = orders.withColumn(_CHOICE, choice_column(arms, zeros, 0.0))
    value, cost = F.lit(0.0), F.lit(0.0)
    for j in range(arms):
        value = F.when(F.col(_CHOICE) == j + 1, F.col(value_column(j))).otherwise(value)
        cost = F.when(F.col(_CHOICE) == j + 1, F.col(cost_column(j))).otherwise(cost)
    row = frame.agg(F.sum(value).alias("value"), F.sum(cost).alias("cost")).first()
    total = float(row["value"] or 0.0) if row is not None else 0.0
    spent = float(row["cost"] or 0.0) if row is not None else 0.0
    return Prices(
        prices=zeros,
        budget_price=0.0,
        center=zeros,
        center_budget_price=0.0,
        decided=pd.DataFrame({"order_id": pd.Series(dtype=object), "choice": []}),
        objective=total,
        upper_bound=total,
        spent=spent,
        rounds=0,
        marginal=0,
    )
