"""The policy: which orders to act on, with which arm, in which order, within real capacity.

Net value of arm ``A`` for order ``o`` is its expected retained revenue uplift minus what the
arm costs: a fixed cost per use plus, for a voucher, a cost paid only when the order is kept,
so ``cost = cost_A + voucher_A * P(retained | A)`` with ``P(retained | A) = retained_base +
retained_uplift_A``. The allocation (see :mod:`uplift.allocation`) is exact, not greedy by rank.
A random holdout stays on control and a random exploration share gets a random arm; every row
of the queue records the probability with which this procedure gives it its arm, so next
week's log can evaluate any policy and retrain without bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.allocation import Allocation, allocate
from uplift.exceptions import ConfigError, SchemaError, describe_rows
from uplift.texts import text_per_pair

FloatArray = NDArray[np.float64]
REVENUE_PREFIX = "revenue_uplift_"
RETAINED_PREFIX = "retained_uplift_"
QUEUE_COLUMNS = (
    "order_id",
    "arm",
    "rank",
    "net_value",
    "expected_retained_revenue",
    "cost",
    "holdout",
    "propensity",
    "reason",
)
PENDING_PAYMENT = ("pending", "retry_failed")


@dataclass(frozen=True)
class NetValue:
    """Per order (rows) and treatment arm (columns, in ``arms`` order): expected retained revenue
    uplift and expected cost; ``value = revenue - cost`` is the net value (control is 0)."""

    arms: tuple[str, ...]
    revenue: FloatArray
    cost: FloatArray

    @property
    def value(self) -> FloatArray:
        return self.revenue - self.cost


@dataclass(frozen=True)
class Assignment:
    """The queue a CX team executes, and what it is expected to yield.

    Attributes
    ----------
    queue : DataFrame
        One row per order: ``order_id, arm, rank, net_value, expected_retained_revenue, cost,
        holdout, propensity, reason``. Orders to act on come first by ``rank`` (1 = highest net
        value); rows whose arm is the control arm have no rank.
    summary : DataFrame
        Per arm (control first): ``orders, holdout, expected_retained_revenue, cost, net_value,
        capacity, capacity_used`` (share of the capacity) and ``shadow_price`` (net value one
        more unit of capacity would add; 0 when it does not bind, NaN without a capacity).
    budget_used, budget_price : float
        Cost spent and the shadow price of the budget (0 when it does not bind).
    objective, upper_bound : float
        Expected net value of the optimal allocation of the orders outside holdout and
        exploration, and the dual bound on it (equal without a budget; see
        :mod:`uplift.allocation` for the gap with one).
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
# Net value


def effect_arms(effects: pd.DataFrame) -> tuple[str, ...]:
    """The treatment arms of an effects frame: every ``revenue_uplift_<arm>`` column."""
    arms = tuple(c.removeprefix(REVENUE_PREFIX) for c in effects.columns if _is_revenue(c))
    if not arms:
        raise SchemaError(
            "effects have no revenue_uplift_<arm> column; expected the output of "
            f"`uplift predict`; columns present: {', '.join(map(str, effects.columns))}"
        )
    return arms


def _is_revenue(column: object) -> bool:
    return isinstance(column, str) and column.startswith(REVENUE_PREFIX)


def net_value(
    effects: pd.DataFrame,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
    control: str = "control",
) -> NetValue:
    """Expected retained revenue uplift and cost per order and treatment arm.

    ``costs`` is paid on every use of an arm (arms not named cost 0); ``vouchers`` only when
    the order is kept, so it needs the predicted retention level, ``retained_base +
    retained_uplift_<arm>``, not just the uplift. The control arm takes no action: a cost of
    0 may be given for it (as in a full cost table), any other is refused.
    """
    arms = effect_arms(effects)
    costs, vouchers = (
        _without_free_control(costs, control),
        _without_free_control(vouchers, control),
    )
    _check_arm_numbers("cost", costs, arms)
    _check_arm_numbers("voucher", vouchers, arms)
    revenue = _finite(effects, [REVENUE_PREFIX + a for a in arms])
    cost = np.broadcast_to(np.array([costs.get(a, 0.0) for a in arms]), revenue.shape).copy()
    voucher_arms = [a for a in arms if vouchers.get(a, 0.0) > 0]
    if voucher_arms:
        needed = ["retained_base", *[RETAINED_PREFIX + a for a in voucher_arms]]
        levels = _finite(effects, needed)
        kept = np.clip(levels[:, :1] + levels[:, 1:], 0.0, 1.0)
        columns = [arms.index(a) for a in voucher_arms]
        cost[:, columns] += kept * np.array([vouchers[a] for a in voucher_arms])
    return NetValue(arms=arms, revenue=revenue, cost=cost)


def _without_free_control(numbers: Mapping[str, float] | None, control: str) -> dict[str, float]:
    numbers = dict(numbers or {})
    if numbers.get(control) == 0:
        del numbers[control]
    return numbers


def _check_arm_numbers(kind: str, numbers: Mapping[str, float], arms: tuple[str, ...]) -> None:
    unknown = sorted(set(numbers) - set(arms))
    if unknown:
        raise ConfigError(
            f"{kind} given for unknown arm(s) {', '.join(unknown)}; the model knows "
            f"{', '.join(arms)}"
        )
    bad = {a: v for a, v in numbers.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ConfigError(f"{kind} must be a finite number >= 0; got {bad}")


def _finite(effects: pd.DataFrame, columns: list[str]) -> FloatArray:
    missing = [c for c in columns if c not in effects.columns]
    if missing:
        raise SchemaError(
            f"effects lack column(s) {', '.join(missing)}; a voucher needs the predicted "
            "retention level (retained_base and retained_uplift_<arm>)"
        )
    values = effects[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise SchemaError(
            f"effects column(s) {', '.join(columns)} hold missing or infinite values in "
            f"{describe_rows(np.flatnonzero(bad) + 1)}"
        )
    return values


# --------------------------------------------------------------------------------------------
# Simple policies to compare (arm per order, aligned with the input rows)


def treat_none(orders: pd.DataFrame, control: str = "control") -> NDArray[np.object_]:
    """Every order on control."""
    return np.full(len(orders), control, dtype=object)


def treat_all(orders: pd.DataFrame, arm: str) -> NDArray[np.object_]:
    """Every order gets ``arm``."""
    return np.full(len(orders), arm, dtype=object)


def pending_payment_rule(
    orders: pd.DataFrame, arm: str = "payment_rescue", control: str = "control"
) -> NDArray[np.object_]:
    """The rule of thumb: ``arm`` for orders whose payment is pending or failed a retry."""
    if "payment_status" not in orders.columns:
        raise SchemaError("the pending-payment rule needs a payment_status column")
    pending = orders["payment_status"].isin(PENDING_PAYMENT).to_numpy()
    return np.where(pending, arm, control).astype(object)


def best_arm(
    effects: pd.DataFrame,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
    control: str = "control",
) -> NDArray[np.object_]:
    """The model's unconstrained choice: the arm of highest net value, control if none pays."""
    values = net_value(effects, costs, vouchers, control)
    best = np.column_stack([np.zeros(len(effects)), values.value]).argmax(axis=1)
    return np.array([control, *values.arms], dtype=object)[best]


# --------------------------------------------------------------------------------------------
# The allocation with holdout and exploration


def rank_orders(
    effects: pd.DataFrame,
    *,
    costs: Mapping[str, float] | None = None,
    vouchers: Mapping[str, float] | None = None,
    capacity: Mapping[str, float] | None = None,
    budget: float | None = None,
    holdout: float = 0.0,
    explore: float = 0.0,
    seed: int = 0,
    control: str = "control",
) -> Assignment:
    """Allocate arms to orders exactly within capacities and budget, and rank the queue.

    ``effects`` is the output of ``UpliftModel.predict_effects`` (or a file written by
    ``uplift predict``); order ids come from its ``order_id`` column, else its index.
    ``capacity`` caps the number of orders per arm. ``holdout`` keeps a random share of all
    orders on control; ``explore`` gives a random share an arm drawn uniformly from all arms
    (control included). Same seed, same queue.
    """
    check_unique_ids(_order_ids(effects), "effects")
    values = net_value(effects, costs, vouchers, control)
    caps = _capacities(capacity, values.arms, control)
    _check_shares(holdout, explore)
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise ConfigError(f"budget must be a finite number >= 0; got {budget!r}")
    n, k = values.revenue.shape
    rng = np.random.default_rng(seed)
    draw = rng.random(n)
    held = np.less(draw, holdout)
    explored = np.greater_equal(draw, holdout) & np.less(draw, holdout + explore)
    explore_arm, explore_share = _explore_arms(rng, explored, k, caps)
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
        params={"holdout": holdout, "explore": explore, "seed": seed},
    )


def _capacities(
    capacity: Mapping[str, float] | None, arms: tuple[str, ...], control: str
) -> FloatArray:
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


def _check_shares(holdout: float, explore: float) -> None:
    for name, share in (("holdout", holdout), ("explore", explore)):
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"{name} must be a share in [0, 1); got {share!r}")
    if holdout + explore >= 1.0:
        raise ConfigError(
            f"holdout + explore must leave orders to the policy; got {holdout} + {explore} >= 1"
        )


def _explore_arms(
    rng: np.random.Generator, explored: NDArray[np.bool_], k: int, caps: FloatArray
) -> tuple[NDArray[np.int64], FloatArray]:
    """A uniform arm (control included) per explored order. Where draws exceed an arm's
    capacity, a random subset keeps it and the others go to control; the share of each arm
    (the exploration propensity) is adjusted to match."""
    drawn = rng.integers(0, k + 1, size=len(explored))
    order = rng.permutation(len(explored))
    share = np.full(k + 1, 1.0 / (k + 1))
    for j in np.flatnonzero(np.isfinite(caps)):
        rows = order[(drawn[order] == j + 1) & explored[order]]
        if len(rows) > caps[j]:
            drawn[rows[int(caps[j]) :]] = 0
            share[j + 1] *= caps[j] / len(rows)
    share[0] = 1.0 - share[1:].sum()
    return drawn.astype(np.int64), share


def _spent(cost: FloatArray, arm: NDArray[np.int64]) -> float:
    rows = np.flatnonzero(arm > 0)
    return float(cost[rows, arm[rows] - 1].sum())


def _policy_arms(values: NetValue, solved: Allocation) -> NDArray[np.int64]:
    """The arm the policy would give each order at the optimal prices (for the propensity of
    orders held out or explored)."""
    priced = values.value - solved.prices - solved.budget_price * values.cost
    return np.column_stack([np.zeros(len(priced)), priced]).argmax(axis=1).astype(np.int64)


def _queue(
    effects: pd.DataFrame,
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
    ids = effects["order_id"].to_numpy() if "order_id" in effects.columns else effects.index
    # Acted-on orders by net value (ties by input order), then the rest in input order.
    ranked = np.lexsort((rows, np.where(acted, -net, np.inf)))
    rank = pd.array(np.full(n, pd.NA), dtype="Int64")
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
    texts = [_reason(labels, a, w, bool(limited[w])) for a in range(k) for w in range(k)]
    code = arm * k + wanted
    code = np.where(explored, len(texts), np.where(held, len(texts) + 1, code))
    categories, index = np.unique([*texts, "explore", "holdout"], return_inverse=True)
    return pd.Categorical.from_codes(index[code], categories=pd.Index(categories.astype(str)))


def _reason(labels: NDArray[np.object_], given: int, wanted: int, limited: bool) -> str:
    """Why an order received arm ``given`` when its best arm by net value was ``wanted``."""
    blocked = f"capacity full for {labels[wanted]}" if limited else "budget spent"
    if given == 0:
        return "no arm pays for its cost" if wanted == 0 else blocked
    chosen = f"best net value via {labels[given]}"
    return chosen if given == wanted else f"{chosen}; {blocked}"


def explain_queue(
    assignment: Assignment,
    features: pd.DataFrame,
    effects: pd.DataFrame,
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
    from uplift.models.diagnose import explain_arms

    values = net_value(effects, costs, vouchers, assignment.control)
    ids = effects["order_id"].to_numpy() if "order_id" in effects.columns else effects.index
    net = pd.DataFrame(values.value, columns=list(values.arms))
    chosen = assignment.arm_by_order().reindex(ids).reset_index(drop=True)
    rows = features.reset_index(drop=True)
    tree = explain_arms(rows, net, control=assignment.control, chosen=chosen)
    why = pd.Series(tree.orders["reason"].to_numpy(), index=ids)
    return with_reasons(assignment.queue, why)


def with_reasons(queue: pd.DataFrame, why: pd.Series) -> pd.DataFrame:
    """Prefix the reason of every order decided by the policy with ``why`` (by order_id)."""

    def reason(rule: Any, policy: str) -> str:
        return policy if policy in ("holdout", "explore") or pd.isna(rule) else f"{rule}; {policy}"

    rule = why.reindex(queue["order_id"]).to_numpy()
    return queue.assign(reason=text_per_pair(rule, queue["reason"], reason))


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


def _order_ids(frame: pd.DataFrame) -> pd.Series:
    ids = frame["order_id"] if "order_id" in frame.columns else frame.index
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
