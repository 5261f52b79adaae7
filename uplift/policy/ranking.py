"""The queue: which orders to act on, with which arm, in which order, within real capacity.

Orders are valued by net value (:mod:`uplift.models.effects`); the allocation (see
:mod:`uplift.policy.allocation`) solves a linear program, not greedy by rank. A random holdout
stays on control and a random exploration share gets a random arm; every row of the queue
records the probability with which this procedure gives it its arm, so next week's log can
evaluate any policy and retrain without bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from uplift.data.texts import text_per_pair
from uplift.exceptions import ConfigError, SchemaError, describe_rows
from uplift.experiment.assignment import EXPLORE_SALT, hash_unit, rank_salt
from uplift.models.diagnose import explain_arms
from uplift.models.effects import Effects, NetValue, as_effects
from uplift.models.risk import RISK_COLUMNS
from uplift.policy.allocation import Allocation, allocate

__all__ = [
    "QUEUE_COLUMNS",
    "Assignment",
    "check_capacities",
    "check_order_arms",
    "check_shares",
    "check_unique_ids",
    "explain_queue",
    "order_ids",
    "rank_orders",
    "reason_text",
    "with_reasons",
    "with_risk",
]

FloatArray = NDArray[np.float64]
QUEUE_COLUMNS = (
    "order_id",
    "arm",
    "rank",
    "net_value",
    "expected_retained_revenue",
    "cost",
    "holdout",
    "propensity",
    "policy_arm",
    "reason",
)


@dataclass(frozen=True)
class Assignment:
    """The queue a CX team executes, and what it is expected to yield.

    Attributes
    ----------
    queue : DataFrame
        One row per order: ``order_id, arm, rank, net_value, expected_retained_revenue, cost,
        holdout, propensity, policy_arm, reason``. Orders to act on come first by ``rank``
        (1 = highest net value); rows whose arm is the control arm have no rank.
        ``policy_arm`` is the arm the policy intends (for an order held out or explored, the
        arm it would have given): the readout of the policy against its holdout needs it.
    summary : DataFrame
        Per arm (control first): ``orders, holdout, expected_retained_revenue, cost, net_value,
        capacity, capacity_used`` (share of the capacity) and ``shadow_price`` (net value one
        more unit of capacity would add; 0 when it does not bind, NaN without a capacity).
    budget_used, budget_price : float
        Cost spent and the shadow price of the budget (0 when it does not bind).
    objective, upper_bound : float
        Expected net value of the optimal allocation of the orders outside holdout and
        exploration, and the dual bound on it (equal without a budget; see
        :mod:`uplift.policy.allocation` for the gap with one).
    """

    queue: pd.DataFrame
    summary: pd.DataFrame
    control: str
    budget: float | None
    budget_used: float
    budget_price: float
    objective: float
    upper_bound: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def arm_by_order(self) -> pd.Series:
        """The arm given to each order, indexed by ``order_id``."""
        return self.queue.set_index("order_id")["arm"]


# --------------------------------------------------------------------------------------------
# The allocation with holdout and exploration


def rank_orders(
    effects: Effects | pd.DataFrame,
    *,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
    capacity: Mapping[str, float] | None = None,
    budget: float | None = None,
    holdout: float = 0.0,
    explore: float = 0.0,
    seed: int = 0,
    control: str = "control",
    salt: str | None = None,
) -> Assignment:
    """Allocate arms to orders within capacities and budget (see allocation), and rank the queue.

    ``effects`` is the output of ``UpliftModel.predict_effects`` (or a frame of the columns
    ``uplift predict`` writes, whose control arm is ``control``); order ids come from its
    order ids, else its index.
    ``capacity`` caps the number of orders per arm. ``holdout`` keeps a random share of all
    orders on control; ``explore`` gives a random share an arm drawn uniformly from all arms
    (control included). The draws are those of ``uplift assign``: ``u = hash_unit(order_id,
    salt)`` holds an order out when ``u < holdout`` and explores it when ``u < holdout +
    explore``, with the arm ``floor(hash_unit(order_id, salt + ":explore") * (K + 1))``; the
    salt defaults to ``uplift-rank:<seed>``. So an order gets the same draws in any row order,
    on the Spark engine and in ``uplift serve`` with the same salt. Same seed, same queue.
    """
    effects = as_effects(effects, control)
    control = effects.control
    check_unique_ids(order_ids(effects), "effects")
    values = effects.net_value(costs, vouchers)
    caps = check_capacities(capacity, values.arms, control)
    check_shares(holdout, explore)
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise ConfigError(f"budget must be a finite number >= 0; got {budget!r}")
    k = values.revenue.shape[1]
    salt = rank_salt(seed) if salt is None else salt
    ids = order_ids(effects).to_numpy()
    draw = hash_unit(pd.Series(ids), salt) if holdout + explore > 0 else np.ones(len(ids))
    held = np.less(draw, holdout)
    explored = np.greater_equal(draw, holdout) & np.less(draw, holdout + explore)
    explore_arm, explore_share = _explore_arms(ids, draw, explored, k, caps, salt)
    arm = np.where(explored, explore_arm, 0)
    spent = _spent(values.cost, arm)
    remaining = math.inf if budget is None else budget - spent
    if remaining < 0:
        raise ConfigError(
            f"exploration alone would spend {spent:.2f} of the budget {budget}; lower --explore "
            "or raise --budget"
        )
    rest = ~held & ~explored
    room = caps - np.bincount(arm, minlength=k + 1)[1:]
    solved = allocate(values.value[rest], values.cost[rest], room, remaining)
    arm[rest] = solved.choice
    policy_arm = _policy_arms(values, solved)
    policy_arm[rest] = solved.choice
    propensity = (
        (1 - holdout - explore) * (arm == policy_arm)
        + holdout * (arm == 0)
        + explore * explore_share[arm]
    )
    labels = np.array([control, *values.arms], dtype=object)
    queue = _queue(effects, values, arm, labels, held, propensity)
    queue.insert(8, "policy_arm", _texts(policy_arm[queue.index], labels, queue.index))
    queue["reason"] = _reasons(values, arm, held, explored, solved, labels)[queue.index.to_numpy()]
    queue = queue.reset_index(drop=True)
    return Assignment(
        queue=queue,
        summary=_summary(queue, labels, caps, solved),
        control=control,
        budget=budget,
        budget_used=spent + solved.budget_used,
        budget_price=solved.budget_price,
        objective=solved.objective,
        upper_bound=solved.upper_bound,
        params={"holdout": holdout, "explore": explore, "seed": seed, "salt": salt},
    )


def check_capacities(
    capacity: Mapping[str, float] | None, arms: tuple[str, ...], control: str
) -> FloatArray:
    """Each arm's capacity (inf where none), refusing the control arm, unknown arms and
    capacities that are not whole numbers >= 0."""
    capacity = dict(capacity or {})
    if control in capacity:
        raise ConfigError(f"capacity given for the control arm {control!r}; it takes no action")
    unknown = sorted(set(capacity) - set(arms))
    if unknown:
        raise ConfigError(
            f"capacity given for unknown arm(s) {', '.join(unknown)}; the model knows "
            f"{', '.join(arms)}"
        )
    bad = {a: v for a, v in capacity.items() if not (v >= 0 and float(v).is_integer())}
    if bad:
        raise ConfigError(f"capacity must be a whole number of orders >= 0; got {bad}")
    return np.array([float(capacity.get(a, math.inf)) for a in arms])


def check_shares(holdout: float, explore: float) -> None:
    """Refuse holdout and exploration shares outside [0, 1) or leaving no order to the policy."""
    for name, share in (("holdout", holdout), ("explore", explore)):
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"{name} must be a share in [0, 1); got {share!r}")
    if holdout + explore >= 1.0:
        raise ConfigError(
            f"holdout + explore must leave orders to the policy; got {holdout} + {explore} >= 1"
        )


def _explore_arms(
    ids: NDArray[Any],
    draw: FloatArray,
    explored: NDArray[np.bool_],
    k: int,
    caps: FloatArray,
    salt: str,
) -> tuple[NDArray[np.int64], FloatArray]:
    """A uniform arm (control included) per explored order, by its second hash. Where explored
    orders exceed an arm's capacity, those of smallest draw (ties by order_id) keep it and the
    others go to control; the share of each arm (the exploration propensity) is adjusted to
    match."""
    drawn = np.zeros(len(ids), dtype=np.int64)
    rows = np.flatnonzero(explored)
    if len(rows):
        pick = hash_unit(pd.Series(ids[rows]), salt + EXPLORE_SALT)
        drawn[rows] = np.minimum(np.floor(pick * (k + 1)).astype(np.int64), k)
    share = np.full(k + 1, 1.0 / (k + 1))
    for j in np.flatnonzero(np.isfinite(caps)):
        given = np.flatnonzero(drawn == j + 1)
        if len(given) > caps[j]:
            ranked = given[np.lexsort((ids[given], draw[given]))]
            drawn[ranked[int(caps[j]) :]] = 0
            share[j + 1] *= caps[j] / len(given)
    share[0] = 1.0 - share[1:].sum()
    return drawn, share


def _spent(cost: FloatArray, arm: NDArray[np.int64]) -> float:
    rows = np.flatnonzero(arm > 0)
    return float(cost[rows, arm[rows] - 1].sum())


def _policy_arms(values: NetValue, solved: Allocation) -> NDArray[np.int64]:
    """The arm the policy would give each order at the optimal prices (for the propensity of
    orders held out or explored)."""
    priced = values.value - solved.prices - solved.budget_price * values.cost
    return np.column_stack([np.zeros(len(priced)), priced]).argmax(axis=1).astype(np.int64)


def _queue(
    effects: Effects,
    values: NetValue,
    arm: NDArray[np.int64],
    labels: NDArray[np.object_],
    held: NDArray[np.bool_],
    propensity: FloatArray,
) -> pd.DataFrame:
    n = len(arm)
    rows, acted = np.arange(n), arm > 0
    pick = np.maximum(arm - 1, 0)
    revenue = np.where(acted, values.revenue[rows, pick], 0.0)
    cost = np.where(acted, values.cost[rows, pick], 0.0)
    net = revenue - cost
    ids = order_ids(effects).to_numpy()
    # Acted-on orders by net value (ties by input order), then the rest in input order.
    ranked = np.lexsort((rows, np.where(acted, -net, np.inf)))
    rank = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))  # all NA
    rank[ranked[: acted.sum()]] = np.arange(1, acted.sum() + 1)
    frame = pd.DataFrame(
        {
            "order_id": ids,
            "arm": pd.Categorical.from_codes(arm, categories=pd.Index(labels.astype(str))),
            "rank": rank,
            "net_value": net,
            "expected_retained_revenue": revenue,
            "cost": cost,
            "holdout": held,
            "propensity": propensity,
        }
    )
    return frame.iloc[ranked]


def _texts(codes: NDArray[np.int64], labels: NDArray[np.object_], index: pd.Index) -> pd.Series:
    """``labels[codes]`` as text (pandas' ``str``) on ``index``, spelled out by arrow: a
    million rows of a few labels, without a million Python strings."""
    texts = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(labels.astype(str)))
    return pd.Series(pd.array(texts.cast(pa.large_string()), dtype="str"), index=index)


def _reasons(
    values: NetValue,
    arm: NDArray[np.int64],
    held: NDArray[np.bool_],
    explored: NDArray[np.bool_],
    solved: Allocation,
    labels: NDArray[np.object_],
) -> pd.Categorical:
    """A short reason per order. Every reason is one of a few texts (by arm received, arm
    wanted, and what stopped it), so they are built once and indexed, as a categorical."""
    n, k = len(arm), len(labels)
    wanted = np.column_stack([np.zeros(n), values.value]).argmax(axis=1)
    limited = np.concatenate([[False], solved.prices > 0])
    names = [str(label) for label in labels]
    texts = [reason_text(names, a, w, bool(limited[w])) for a in range(k) for w in range(k)]
    code = arm * k + wanted
    code = np.where(explored, len(texts), np.where(held, len(texts) + 1, code))
    categories, index = np.unique([*texts, "explore", "holdout"], return_inverse=True)
    return pd.Categorical.from_codes(index[code], categories=pd.Index(categories.astype(str)))


def reason_text(labels: Sequence[str], given: int, wanted: int, limited: bool) -> str:
    """Why an order received arm ``given`` when its best arm by net value was ``wanted``."""
    blocked = f"capacity full for {labels[wanted]}" if limited else "budget spent"
    if given == 0:
        return "no arm pays for its cost" if wanted == 0 else blocked
    chosen = f"best net value via {labels[given]}"
    return chosen if given == wanted else f"{chosen}; {blocked}"


def explain_queue(
    assignment: Assignment,
    features: pd.DataFrame,
    effects: Effects | pd.DataFrame,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The queue with each decided order's reason prefixed by why its arm fits the order.

    ``features`` and ``effects`` are the ranked orders' rows (``order_id`` in ``effects``, or
    its index). Why an arm fits is the rule of a shallow policy tree fitted to the queue's
    arms over the orders' net values (:func:`uplift.models.explain_arms`), e.g. "payment
    status is pending: payment rescue". Held-out and explored orders keep their reason:
    chance, not the order, decided their arm.
    """
    effects = as_effects(effects, assignment.control)
    values = effects.net_value(costs, vouchers)
    ids = order_ids(effects).to_numpy()
    net = pd.DataFrame(values.value, columns=list(values.arms))
    chosen = assignment.arm_by_order().reindex(ids).reset_index(drop=True)
    rows = features.reset_index(drop=True)
    tree = explain_arms(rows, net, control=assignment.control, chosen=chosen)
    why = pd.Series(tree.orders["reason"].array, index=ids)  # kept categorical: fewer texts
    return with_reasons(assignment.queue, why)


def with_reasons(queue: pd.DataFrame, why: pd.Series) -> pd.DataFrame:
    """Prefix the reason of every order decided by the policy with ``why`` (by order_id)."""

    def reason(rule: Any, policy: str) -> str:
        return policy if policy in ("holdout", "explore") or pd.isna(rule) else f"{rule}; {policy}"

    rule = why.reindex(queue["order_id"])
    return queue.assign(reason=text_per_pair(rule, queue["reason"], reason))


def with_risk(queue: pd.DataFrame, risk: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """The queue with every order's ``risk``, ``cause`` and ``cause_share`` (by order_id).

    ``risk`` is a model's ``predict_risk`` of the ranked orders, row for row with ``ids``.
    """
    by_id = risk[list(RISK_COLUMNS)].set_axis(pd.Index(ids.to_numpy(), name="order_id"))
    rows = by_id.reindex(queue["order_id"])
    return queue.assign(**{c: rows[c].to_numpy() for c in RISK_COLUMNS})


def _summary(
    queue: pd.DataFrame, labels: NDArray[np.object_], caps: FloatArray, solved: Allocation
) -> pd.DataFrame:
    grouped = queue.groupby("arm", sort=False, observed=True)
    totals = grouped[["expected_retained_revenue", "cost", "net_value"]].sum()
    summary = pd.DataFrame({"arm": labels})
    summary["orders"] = summary["arm"].map(grouped.size()).fillna(0).astype(np.int64)
    summary["holdout"] = summary["arm"].map(grouped["holdout"].sum()).fillna(0).astype(np.int64)
    for column in totals.columns:
        summary[column] = summary["arm"].map(totals[column]).fillna(0.0)
    capacity = np.concatenate([[math.inf], caps])
    summary["capacity"] = np.where(np.isfinite(capacity), capacity, np.nan)
    summary["capacity_used"] = summary["orders"] / summary["capacity"]
    price = np.concatenate([[np.nan], solved.prices])
    summary["shadow_price"] = np.where(np.isfinite(summary["capacity"]), price, np.nan)
    return summary


def order_ids(effects: Effects) -> pd.Series:
    """The effects' order ids, else their index, as a series numbered from 0."""
    ids = effects.order_ids if effects.order_ids is not None else effects.index
    return pd.Series(np.asarray(ids))


def check_unique_ids(ids: pd.Series, source: str) -> None:
    """Refuse repeated order ids: the queue, its reasons and its holdout are keyed by them."""
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        values = pd.unique(ids[repeated])
        shown = ", ".join(map(str, values[:5])) + (
            f" and {len(values) - 5} more" if len(values) > 5 else ""
        )
        raise SchemaError(
            f"{source}: order_id {shown} appear(s) more than once, in "
            f"{describe_rows(np.flatnonzero(repeated) + 1)}; every order must appear once"
        )


def check_order_arms(
    orders: pd.DataFrame, arms: tuple[str, ...], control: str, *, source: str = "orders"
) -> None:
    """An ``arm`` column in the orders (the arm a previous run gave) may only name arms the
    model knows: anything else means the orders and the model do not belong together."""
    if "arm" not in orders.columns:
        return
    unknown = ~orders["arm"].isin([control, *arms]).to_numpy()
    if unknown.any():
        seen = sorted(orders.loc[unknown, "arm"].astype(str).unique())
        raise SchemaError(
            f"{source}: column 'arm' names arm(s) {', '.join(seen)} the model never saw in "
            f"{describe_rows(np.flatnonzero(unknown) + 1)}; the model knows "
            f"{', '.join([control, *arms])}"
        )
