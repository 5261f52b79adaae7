"""Online capacity pacing: per-arm prices that spend each period's capacity evenly.

The service's online allocation in two steps, as in the paper below: the primal step
(:func:`allocate`) gives each order the arm of largest ``net value - price`` with room left;
the dual step (:meth:`Pacer.update`) moves the prices.

The weekly allocation (:mod:`uplift.policy.allocation`) sees all of a week's orders at once and
prices each arm's capacity exactly. The service sees orders one at a time, so it learns the
prices as the period goes, by the dual (sub)gradient step of Balseiro, Lu and Mirrokni,
"Dual Mirror Descent for Online Allocation Problems" (ICML 2020), Algorithm 1 with the
Euclidean mirror map. There, request ``t`` takes the arm maximising ``value - price``, and
after it the price of an arm with budget ``rho`` per request moves by::

    price <- max(0, price + eta * (consumed_t - rho))

so an arm used faster than its budget gets dearer, and one used slower gets cheaper, down to 0
when its capacity does not bind. The service does not know how many orders a period will
bring, so its budget is in time instead of requests: over an interval in which the period's
elapsed share grows by ``ds``, an arm of capacity ``C`` may use ``C * ds`` units, and the
price moves by ``eta * (used in the interval - C * ds)``. Summed from the start of the period,
the price is (while it stays above 0) ``eta * C * (used share - elapsed share)``: the gap
between the share of capacity used and the share of the period gone, as the brief for online
pacing asks (with uniform arrivals, elapsed time is the requests' share of the period).

``eta = scale / (step * C)``: an arm ``step`` of its capacity ahead of schedule is priced at
about ``scale``, its mean positive net value so far, which turns most of its orders away.
Prices start from the shadow prices of the last weekly allocation (the paper's initial dual
solution) and carry over from one period to the next.

Two guards keep capacity from going early whatever the prices do (a burst before a price has
caught up, a batch decided at one price): an arm never uses more than its capacity, and by
elapsed share ``s`` of the period at most ``ceil(C * min(1, s + lead))`` units (capacity is
released over the period, as budget pacing in ad serving does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Decided",
    "Pacer",
    "allocate",
    "best_open_arm",
    "elapsed_share",
    "fill",
    "iso_week",
    "period_key",
    "reasons",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_PERIOD_SECONDS = {"day": 86_400.0, "week": 7 * 86_400.0}


class Pacer:
    """Prices, used units and released room of the capacitated arms over one period.

    Not thread-safe: the engine calls it under its lock. Arms are ``arms`` in that order;
    ``capacity`` is ``inf`` for an unlimited arm, whose price stays 0.
    """

    def __init__(
        self,
        arms: Sequence[str],
        capacities: Mapping[str, float],
        prices: Mapping[str, float],
        *,
        step: float,
        lead: float,
        share: float = 0.0,
    ) -> None:
        self.arms = tuple(arms)
        self.capacity = np.array([float(capacities.get(a, math.inf)) for a in self.arms])
        limited = np.isfinite(self.capacity)
        start = np.array([float(prices.get(a, 0.0)) for a in self.arms])
        self.prices: FloatArray = np.where(limited, np.maximum(start, 0.0), 0.0)
        self.used: FloatArray = np.zeros(len(self.arms))
        self.step = step
        self.lead = lead
        self.share = share
        self._since: FloatArray = np.zeros(len(self.arms))
        self._value_sum: FloatArray = np.zeros(len(self.arms))
        self._value_count: FloatArray = np.zeros(len(self.arms))

    @property
    def limited(self) -> NDArray[np.bool_]:
        """Arms with a capacity."""
        return np.isfinite(self.capacity)

    def room(self, share: float) -> FloatArray:
        """Units each arm may still give at elapsed share ``share`` (``inf`` when unlimited)."""
        limited = self.limited
        capacity = np.where(limited, self.capacity, 0.0)
        released = np.ceil(capacity * min(1.0, max(share, 0.0) + self.lead))
        cap = np.where(limited, np.minimum(capacity, released), np.inf)
        return np.maximum(cap - self.used, 0.0)

    def full(self) -> NDArray[np.bool_]:
        """Arms whose whole capacity of the period is used."""
        return self.used >= self.capacity

    def new_period(self, share: float) -> None:
        """Start a period at elapsed share ``share``: nothing used, prices kept."""
        self.used = np.zeros(len(self.arms))
        self._since = np.zeros(len(self.arms))
        self.share = share

    def restore(self, used: Mapping[str, int]) -> None:
        """Set the units already used in this period (from the journal after a restart)."""
        self.used = np.array([float(used.get(a, 0)) for a in self.arms])

    def take(self, counts: FloatArray) -> None:
        """Count ``counts`` units given per arm."""
        self.used = self.used + counts
        self._since = self._since + counts

    def give_back(self, arm: str) -> None:
        """Return one unit of ``arm`` (its decision was superseded in this period)."""
        if arm in self.arms:
            j = self.arms.index(arm)
            self.used[j] = max(self.used[j] - 1.0, 0.0)
            self._since[j] -= 1.0

    def observe(self, values: FloatArray) -> None:
        """Learn the scale of each arm's positive net values (orders x arms)."""
        positive = values > 0
        self._value_sum = self._value_sum + np.where(positive, values, 0.0).sum(axis=0)
        self._value_count = self._value_count + positive.sum(axis=0)

    def update(self, share: float) -> None:
        """One dual step for everything used since the last step, at elapsed share ``share``."""
        elapsed = max(share - self.share, 0.0)
        limited = self.limited & (self.capacity > 0)
        scale = np.divide(
            self._value_sum,
            self._value_count,
            out=np.zeros(len(self.arms)),
            where=self._value_count > 0,
        )
        capacity = np.where(limited, self.capacity, 1.0)
        eta = scale / (self.step * capacity)
        moved = self.prices + eta * (self._since - capacity * elapsed)
        self.prices = np.where(limited, np.maximum(moved, 0.0), 0.0)
        self._since = np.zeros(len(self.arms))
        self.share = max(share, self.share)

    def for_arms(
        self,
        arms: Sequence[str],
        capacities: Mapping[str, float],
        prices: Mapping[str, float] | None,
    ) -> Pacer:
        """A pacer over ``arms`` (a new model's) keeping this one's state for arms in common;
        ``prices`` (newly stored weekly prices) replace the current ones when given."""
        current = {a: float(p) for a, p in zip(self.arms, self.prices, strict=True)}
        other = Pacer(
            arms,
            capacities,
            current if prices is None else prices,
            step=self.step,
            lead=self.lead,
            share=self.share,
        )
        for j, arm in enumerate(other.arms):
            if arm in self.arms:
                k = self.arms.index(arm)
                other.used[j] = self.used[k]
                other._since[j] = self._since[k]
                other._value_sum[j] = self._value_sum[k]
                other._value_count[j] = self._value_count[k]
        return other


# --------------------------------------------------------------------------------------------
# The primal step: arms for a batch at the current prices


@dataclass(frozen=True, eq=False)
class Decided:
    """Per order: arm given (0 = control), the policy's arm, net value, propensity, route."""

    arm: IntArray
    policy: IntArray
    wanted: IntArray
    net_value: FloatArray
    propensity: FloatArray
    held: NDArray[np.bool_]
    explored: NDArray[np.bool_]


def allocate(
    value: FloatArray,
    prices: FloatArray,
    room: FloatArray,
    hold: FloatArray,
    pick: FloatArray,
    holdout: float,
    explore: float,
) -> Decided:
    """Arms for a batch: holdout and exploration by hash, the policy within ``room``.

    ``value`` is orders x treatment arms (net values); ``room`` the units each arm may still
    give; ``hold`` and ``pick`` the orders' two hash draws in [0, 1). Explored orders take
    their arm first, in batch order; the policy's orders then take the largest
    ``value - price`` with room left (see :func:`fill`).
    """
    n, k = value.shape
    room = room.copy()
    held = hold < holdout
    explored = ~held & (hold < holdout + explore)
    explore_arm = np.minimum((pick * k).astype(np.int64), k - 1) + 1
    priced = value - prices
    open_at_start = room > 0
    policy = best_open_arm(priced, open_at_start)
    arm = np.zeros(n, dtype=np.int64)
    for j in range(k):
        asked = np.flatnonzero(explored & (explore_arm == j + 1))
        given = asked if not math.isfinite(room[j]) else asked[: int(room[j])]
        arm[given] = j + 1
        room[j] -= len(given)
    rest = np.flatnonzero(~held & ~explored)
    arm[rest] = fill(priced[rest], room)
    policy[rest] = arm[rest]
    rows = np.arange(n)
    net = np.where(arm > 0, value[rows, np.maximum(arm - 1, 0)], 0.0)
    closed = (~open_at_start).sum() + (explored & (arm == 0) & open_at_start[explore_arm - 1])
    share = 1.0 - holdout - explore
    propensity = share * (arm == policy) + np.where(
        arm == 0, holdout + explore * closed / k, explore / k
    )
    return Decided(
        arm=arm,
        policy=policy,
        wanted=best_open_arm(value, np.ones(k, dtype=bool)),
        net_value=net,
        propensity=propensity,
        held=held,
        explored=explored,
    )


def best_open_arm(priced: FloatArray, open_arms: NDArray[np.bool_]) -> IntArray:
    """Per order, 1 + the open arm of largest priced value; 0 (control) when none is above 0."""
    masked = np.where(open_arms, priced, -np.inf)
    best = masked.argmax(axis=1)
    top = masked[np.arange(len(masked)), best] if len(masked) else np.empty(0)
    return np.where(top > 0, best + 1, 0).astype(np.int64)


def fill(priced: FloatArray, room: FloatArray) -> IntArray:
    """The policy's arms within ``room`` (updated in place), a loop over arms, not orders.

    Every order asks for its best open arm; an arm asked by more orders than it has room for
    keeps those of highest priced value and closes; the others ask again.
    """
    n, k = priced.shape
    arm = np.zeros(n, dtype=np.int64)
    waiting = np.arange(n)
    open_arms = room > 0
    while len(waiting):
        choice = best_open_arm(priced[waiting], open_arms)
        counts = np.bincount(choice, minlength=k + 1)[1:]
        over = np.flatnonzero(counts > room)
        keep = np.ones(len(waiting), dtype=bool)
        for j in over:
            asking = np.flatnonzero(choice == j + 1)
            ranked = asking[np.argsort(-priced[waiting[asking], j], kind="stable")]
            keep[ranked[int(room[j]) :]] = False
            open_arms[j] = False
        done = waiting[keep]
        arm[done] = choice[keep]
        room -= np.bincount(choice[keep], minlength=k + 1)[1:]
        waiting = waiting[~keep]
    return arm


def reasons(decided: Decided, labels: NDArray[np.object_], full: NDArray[np.bool_]) -> list[str]:
    """A short reason per order, from a few texts (by arm given, arm wanted, what stopped it)."""
    k = len(labels)
    texts: dict[int, str] = {}

    def text(given: int, wanted: int) -> str:
        if given == wanted:
            return (
                "no arm pays for its cost" if given == 0 else f"best net value via {labels[given]}"
            )
        blocked = (
            f"capacity full for {labels[wanted]}"
            if full[wanted - 1]
            else f"capacity of {labels[wanted]} paced for later orders"
        )
        return blocked if given == 0 else f"best net value via {labels[given]}; {blocked}"

    code = decided.arm * k + decided.wanted
    for c in np.unique(code):
        texts[int(c)] = text(int(c) // k, int(c) % k)
    out = [texts[int(c)] for c in code]
    for row in np.flatnonzero(decided.explored):
        out[row] = "explore" if decided.arm[row] else "explore; its arm has no capacity left"
    for row in np.flatnonzero(decided.held):
        out[row] = "holdout"
    return out


# --------------------------------------------------------------------------------------------
# Periods


def iso_week(now: datetime) -> str:
    """The ISO week of ``now``, ``YYYY-Www`` (as the store labels weeks)."""
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def period_key(now: datetime, period: str) -> str:
    """The capacity period of ``now``: its date (``day``) or its ISO week (``week``)."""
    return now.date().isoformat() if period == "day" else iso_week(now)


def elapsed_share(now: datetime, period: str) -> float:
    """Elapsed share of the current period (UTC day, or ISO week from Monday 00:00 UTC)."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start -= timedelta(days=now.weekday())
    return min((now - start).total_seconds() / _PERIOD_SECONDS[period], 1.0)
