"""The order world: realistic post-checkout orders, actions with costs, outcomes and their truth.

Every order carries the signals a shop has after checkout (payment state, dispatch delay, stock
confidence, address serviceability, edits, support contacts, tenure, category, value, device,
hour). Its cancellation log-odds are a baseline plus five *causes*:

* payment friction (pending or failed payments, cash on delivery),
* stock doubt (low stock confidence),
* dispatch delay,
* serviceability (remote or unverified addresses),
* buyer doubt (first orders, edits, support contacts, late-night and unusually large orders),

plus an unobserved intent term. Each action acts on the causes it can fix, so effects are
heterogeneous and follow the cause; some actions harm some orders. The true probability of
cancellation of every order under every arm is returned beside the log, never inside it.

Drift is a deterministic function of the calendar week, so a world simulated week by week
(``start_week`` and ``first_order_id`` moving on) drifts the same way as one simulated at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from uplift.exceptions import ConfigError

__all__ = [
    "ARMS",
    "ARM_COSTS",
    "CONTROL",
    "FEATURES",
    "TREATMENT_ARMS",
    "SimulatedWorld",
    "pending_orders",
    "propensity_matrix",
    "simulate",
    "true_retention",
    "true_revenue_uplift",
    "true_uplift",
]

ARMS: tuple[str, ...] = (
    "control",
    "reassurance",
    "expedite",
    "payment_rescue",
    "delivery_update",
    "agent_call",
)
CONTROL = "control"
TREATMENT_ARMS: tuple[str, ...] = ARMS[1:]

#: Cost of one use of each arm, in currency: a message costs cents, an expedited dispatch a
#: courier upgrade, an agent call a few minutes of paid time.
ARM_COSTS: dict[str, float] = {
    "control": 0.0,
    "reassurance": 0.10,
    "expedite": 5.00,
    "payment_rescue": 0.75,
    "delivery_update": 0.10,
    "agent_call": 4.00,
}

#: Columns known when the action is decided (the model's inputs besides order_value).
FEATURES: tuple[str, ...] = (
    "payment_method",
    "payment_status",
    "dispatch_delay_days",
    "stock_confidence",
    "serviceability",
    "order_edits",
    "support_contacts",
    "customer_tenure",
    "prior_orders",
    "category",
    "device",
    "hour",
)
#: Columns only known after the decision; :func:`pending_orders` drops them.
OUTCOME_COLUMNS: tuple[str, ...] = ("arm", "cancelled", "retained", "revenue", "propensity")

CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports")
_CATEGORY_SHARE = np.array([0.18, 0.28, 0.16, 0.12, 0.14, 0.12])
_CATEGORY_MEDIAN_VALUE = np.array([180.0, 60.0, 95.0, 35.0, 45.0, 70.0])
_CATEGORY_VALUE_SIGMA = np.array([0.85, 0.70, 0.80, 0.60, 0.55, 0.75])
_CATEGORY_LOGIT = np.array([0.20, 0.30, 0.00, -0.20, -0.30, 0.00])
_CATEGORY_STOCK_BETA_A = np.array([5.0, 9.0, 6.0, 12.0, 10.0, 8.0])  # electronics stock is scarcer

DEVICES = ("app", "mobile_web", "desktop")
_DEVICE_SHARE = np.array([[0.20, 0.50, 0.30], [0.45, 0.35, 0.20]])  # rows: first order, returning

PAYMENT_METHODS = ("card", "paypal", "buy_now_pay_later", "bank_transfer", "cash_on_delivery")
_METHOD_SHARE = np.array([[0.42, 0.18, 0.10, 0.08, 0.22], [0.50, 0.20, 0.11, 0.08, 0.11]])
PAYMENT_STATUSES = ("confirmed", "pending", "retry_failed", "cash_on_delivery")
_PENDING_BY_METHOD = np.array([0.03, 0.04, 0.12, 0.40, 0.0])
_RETRY_FAILED_BY_METHOD = np.array([0.05, 0.02, 0.06, 0.0, 0.0])
_PAYMENT_FRICTION = np.array([0.0, 1.0, 1.6, 0.5])  # by status

SERVICEABILITY = ("serviceable", "remote", "unverified")
_SERVICE_SHARE = np.array([[0.84, 0.09, 0.07], [0.90, 0.08, 0.02]])  # rows: first, returning
_SERVICE_FRICTION = np.array([0.0, 0.6, 1.3])

TENURES = ("first_order", "returning")
# Orders per hour of day: quiet nights, a lunch bump, an evening peak.
_HOUR_SHARE = np.array(
    [
        *(1.5, 0.9, 0.6, 0.4, 0.4, 0.6, 1.2, 2.5, 3.5, 4.2, 4.6, 5.0),
        *(5.6, 5.4, 5.0, 4.8, 5.0, 5.4, 6.0, 6.6, 7.0, 6.8, 5.4, 3.2),
    ]
)
_HOUR_SHARE = _HOUR_SHARE / _HOUR_SHARE.sum()

_ARM = {arm: i for i, arm in enumerate(ARMS)}
_FIXABLE_STATUS = (PAYMENT_STATUSES.index("pending"), PAYMENT_STATUSES.index("retry_failed"))
_COD_STATUS = PAYMENT_STATUSES.index("cash_on_delivery")
_COD_METHOD = PAYMENT_METHODS.index("cash_on_delivery")
_REMOTE = SERVICEABILITY.index("remote")
_UNVERIFIED = SERVICEABILITY.index("unverified")
_BASE_LOGIT = -3.55
_LOYAL_PRIOR_ORDERS = 5
_PROPENSITY_FLOOR = 0.03  # every logged-policy propensity is at least this, so IPW stays sane
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, eq=False)
class SimulatedWorld:
    """A simulated log and its ground truth.

    ``log`` holds what a shop records (order_id, arm, cancelled, order_value, revenue,
    propensity, assigned_at, features). ``truth`` holds, per order_id, ``p_cancel_<arm>`` (the
    true probability of cancellation under each arm) and ``propensity_<arm>`` (the probability
    with which each arm could have been chosen). Never train on ``truth``.
    """

    log: pd.DataFrame
    truth: pd.DataFrame
    logged_policy: bool

    def arm_summary(self) -> pd.DataFrame:
        """Per arm: orders, share of orders, observed and true mean cancellation rate."""
        rows = np.arange(len(self.log))
        arm_index = pd.Index(ARMS).get_indexer(pd.Index(self.log["arm"]))
        p_logged = self.truth[[f"p_cancel_{a}" for a in ARMS]].to_numpy()[rows, arm_index]
        frame = pd.DataFrame(
            {"arm": self.log["arm"], "cancelled": self.log["cancelled"], "p_cancel": p_logged}
        )
        grouped = frame.groupby("arm", sort=False)
        summary = pd.DataFrame(
            {
                "orders": grouped.size(),
                "cancel_rate": grouped["cancelled"].mean(),
                "true_cancel_rate": grouped["p_cancel"].mean(),
            }
        ).reindex([a for a in ARMS if a in grouped.groups])
        summary.insert(1, "share", summary["orders"] / len(frame))
        return summary.rename_axis("arm").reset_index()


@dataclass(frozen=True)
class _Weeks:
    """Per-week conditions, one entry per simulated week."""

    mondays: tuple[date, ...]
    volume: np.ndarray
    base_shift: np.ndarray
    first_order_share: np.ndarray
    payment_factor: np.ndarray
    delay_rate: np.ndarray
    category_share: np.ndarray  # weeks x categories
    effect_strength: np.ndarray


def simulate(
    orders: int,
    weeks: int = 4,
    seed: int = 0,
    *,
    logged_policy: bool = False,
    control_share: float = 0.2,
    start_week: str = "2026-W40",
    drift: float = 1.0,
    effect_drift: float = 0.0,
    first_order_id: int = 1,
) -> SimulatedWorld:
    """Simulate ``orders`` eligible orders over ``weeks`` ISO weeks from ``start_week``.

    Arms are randomised with a control holdout of ``control_share`` and the rest split evenly
    over the treatment arms, or, with ``logged_policy``, chosen by a targeting policy with known
    non-uniform propensities. ``drift`` scales how much base rates and the order mix move from
    week to week (0 = none). ``effect_drift`` is the fraction of every arm's effect lost by the
    last simulated week, linearly from none in the first (a single week counts as the last;
    negative values strengthen effects, values above 1 reverse them). Same seed, same world.
    """
    _validate(orders, weeks, control_share, drift, effect_drift, first_order_id)
    rng = np.random.default_rng(seed)
    plan = _plan_weeks(_parse_week(start_week), weeks, drift, effect_drift)
    week, assigned_at, hour = _draw_times(rng, orders, plan)
    x = _draw_orders(rng, week, hour, plan)
    causes = _causes(x)
    strength = plan.effect_strength[week][:, None]
    logits = _base_logit(rng, x, causes, plan.base_shift[week])[:, None]
    logits = logits + _arm_effects(x, causes) * strength
    p_cancel = 1.0 / (1.0 + np.exp(-logits))
    if logged_policy:
        propensities = _logged_propensities(x)
    else:
        propensities = _randomised_propensities(orders, control_share)
    arm = _draw_categorical(rng, propensities)
    rows = np.arange(orders)
    cancelled = (rng.random(orders) < p_cancel[rows, arm]).astype(np.int64)
    order_id = np.arange(first_order_id, first_order_id + orders, dtype=np.int64)
    log = pd.DataFrame(
        {
            "order_id": order_id,
            "arm": _labels(ARMS, arm),
            "cancelled": cancelled,
            "order_value": x["order_value"],
            "revenue": x["order_value"] * (1 - cancelled),
            "propensity": propensities[rows, arm],
            "assigned_at": assigned_at,
            **_feature_columns(x),
        }
    )
    truth = pd.DataFrame(
        {
            "order_id": order_id,
            **{f"p_cancel_{a}": p_cancel[:, i] for i, a in enumerate(ARMS)},
            **{f"propensity_{a}": propensities[:, i] for i, a in enumerate(ARMS)},
        }
    )
    return SimulatedWorld(log=log, truth=truth, logged_policy=logged_policy)


def true_uplift(truth: pd.DataFrame) -> pd.DataFrame:
    """True retained uplift per treatment arm (a column per arm): P(cancel | control) -
    P(cancel | arm)."""
    p_cancel = truth[[f"p_cancel_{a}" for a in ARMS]].to_numpy()
    return pd.DataFrame(
        p_cancel[:, :1] - p_cancel[:, 1:], index=truth.index, columns=list(TREATMENT_ARMS)
    )


def true_revenue_uplift(truth: pd.DataFrame, order_value: pd.Series | np.ndarray) -> pd.DataFrame:
    """True retained revenue uplift per treatment arm; ``order_value`` is aligned with ``truth``."""
    value = np.asarray(order_value, dtype=float)
    if value.shape != (len(truth),):
        raise ConfigError(
            f"order_value must hold one value per truth row ({len(truth)}); got shape {value.shape}"
        )
    return true_uplift(truth).mul(value, axis=0)


def true_retention(truth: pd.DataFrame) -> pd.Series:
    """True P(retained | control) per order."""
    return (1 - truth[f"p_cancel_{CONTROL}"]).rename("retained_base")


def propensity_matrix(truth: pd.DataFrame) -> pd.DataFrame:
    """The probability of every arm for every order (rows sum to 1), columns named by arm."""
    return pd.DataFrame({a: truth[f"propensity_{a}"].to_numpy() for a in ARMS}, index=truth.index)


def pending_orders(log: pd.DataFrame) -> pd.DataFrame:
    """The log as it looks at decision time: no arm, outcome, revenue or propensity."""
    return log.drop(columns=[c for c in OUTCOME_COLUMNS if c in log.columns])


# --------------------------------------------------------------------------------------------
# Validation and calendar


def _validate(
    orders: int, weeks: int, control_share: float, drift: float, effect_drift: float, first_id: int
) -> None:
    if int(orders) != orders or orders <= 0:
        raise ConfigError(f"orders must be a positive whole number; got {orders!r}")
    if int(weeks) != weeks or weeks <= 0:
        raise ConfigError(f"weeks must be a positive whole number; got {weeks!r}")
    if not 0.0 < control_share < 1.0:
        raise ConfigError(
            f"control_share must be between 0 and 1 (exclusive); got {control_share!r}"
        )
    if not np.isfinite(drift) or drift < 0:
        raise ConfigError(f"drift must be a finite number >= 0 (0 = no drift); got {drift!r}")
    if not np.isfinite(effect_drift):
        raise ConfigError(f"effect_drift must be a finite number; got {effect_drift!r}")
    if int(first_id) != first_id or first_id < 0:
        raise ConfigError(f"first_order_id must be a whole number >= 0; got {first_id!r}")


def _parse_week(label: str) -> date:
    """The Monday of an ISO week label such as ``2026-W40``."""
    match = _WEEK_RE.match(label)
    try:
        if match is None:
            raise ValueError(label)
        return date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ConfigError(
            f"start_week must be an ISO week label like '2026-W40'; got {label!r}"
        ) from None


def _plan_weeks(first_monday: date, weeks: int, drift: float, effect_drift: float) -> _Weeks:
    """Week conditions as smooth seasonal waves of the calendar week (periods 5 to 13 weeks).

    Using the absolute week (not the position in this run) keeps drift identical however a
    period is split into runs.
    """
    mondays = tuple(first_monday + timedelta(weeks=k) for k in range(weeks))
    t = np.array([m.toordinal() // 7 for m in mondays], dtype=float)

    def wave(period: float, phase: float) -> np.ndarray:
        return drift * np.sin(2 * np.pi * t / period + phase)

    electronics = np.clip(_CATEGORY_SHARE[0] * (1 + 0.35 * wave(11.0, 0.4)), 0.02, 0.6)
    category_share = np.column_stack(
        [
            electronics,
            _CATEGORY_SHARE[1:] * ((1 - electronics) / _CATEGORY_SHARE[1:].sum())[:, None],
        ]
    )
    position = np.arange(weeks) / (weeks - 1) if weeks > 1 else np.ones(1)
    return _Weeks(
        mondays=mondays,
        volume=np.clip(1 + 0.15 * wave(9.0, 1.1), 0.1, None),
        base_shift=0.2 * wave(6.0, 0.3),
        first_order_share=np.clip(0.35 + 0.08 * wave(13.0, 2.0), 0.05, 0.9),
        payment_factor=np.clip(1 + 0.4 * wave(7.0, 4.0), 0.1, None),
        delay_rate=np.clip(0.22 + 0.10 * wave(5.0, 5.2), 0.02, 0.9),
        category_share=category_share,
        effect_strength=1.0 - effect_drift * position,
    )


def _draw_times(
    rng: np.random.Generator, orders: int, plan: _Weeks
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Week index, timestamp and hour of every order, sorted by time (order ids follow time)."""
    counts = rng.multinomial(orders, plan.volume / plan.volume.sum())
    week = np.repeat(np.arange(len(counts)), counts)
    hour = rng.choice(24, size=orders, p=_HOUR_SHARE)
    offset = rng.integers(0, 7, orders) * 86_400 + hour * 3_600 + rng.integers(0, 3_600, orders)
    monday = np.array([np.datetime64(m, "s") for m in plan.mondays])
    stamp = monday[week] + offset.astype("timedelta64[s]")
    order = np.argsort(stamp, kind="stable")
    return week[order], stamp[order].astype("datetime64[us]"), hour[order]


# --------------------------------------------------------------------------------------------
# Orders, causes, effects


def _draw_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows x options) probability matrix."""
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cumulative[:, -1]
    return (u[:, None] >= cumulative[:, :-1]).sum(axis=1)


def _draw_orders(
    rng: np.random.Generator, week: np.ndarray, hour: np.ndarray, plan: _Weeks
) -> dict[str, np.ndarray]:
    n = len(week)
    category = _draw_categorical(rng, plan.category_share[week])
    first = rng.random(n) < plan.first_order_share[week]
    returning = (~first).astype(int)
    prior_orders = np.where(first, 0, rng.geometric(0.22, n))
    device = _draw_categorical(rng, _DEVICE_SHARE[returning])
    method = _draw_categorical(rng, _METHOD_SHARE[returning])
    factor = plan.payment_factor[week]
    u = rng.random(n)
    pending = np.clip(_PENDING_BY_METHOD[method] * factor, 0, 0.9)
    failed = np.clip(_RETRY_FAILED_BY_METHOD[method] * factor, 0, 0.9 - pending)
    status = np.select(
        [method == _COD_METHOD, u < pending, u < pending + failed],
        [_COD_STATUS, *_FIXABLE_STATUS],
        0,
    )
    value = np.round(
        rng.lognormal(np.log(_CATEGORY_MEDIAN_VALUE[category]), _CATEGORY_VALUE_SIGMA[category]), 2
    )
    stock = np.round(rng.beta(_CATEGORY_STOCK_BETA_A[category], 1.4), 2)
    delayed = rng.random(n) < np.clip(plan.delay_rate[week] + 0.6 * (1 - stock) ** 2, 0, 0.95)
    delay = np.where(delayed, 1 + rng.poisson(1.0 + 2.5 * (1 - stock)), 0)
    service = _draw_categorical(rng, _SERVICE_SHARE[returning])
    edits = rng.poisson(0.10 + 0.12 * first)
    contacts = rng.poisson(
        0.04
        + 0.25 * (delay > 0)
        + 0.45 * np.isin(status, _FIXABLE_STATUS)
        + 0.3 * (service == _UNVERIFIED)
    )
    return {
        "category": category,
        "first": first,
        "prior_orders": prior_orders,
        "device": device,
        "method": method,
        "status": status,
        "order_value": value,
        "stock": stock,
        "delay": delay,
        "service": service,
        "edits": edits,
        "contacts": contacts,
        "hour": hour,
    }


def _causes(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The five causes of cancellation, each 0 when absent."""
    relative_value = np.log(x["order_value"] / _CATEGORY_MEDIAN_VALUE[x["category"]])
    return {
        "payment": _PAYMENT_FRICTION[x["status"]],
        "stock": np.clip((0.7 - x["stock"]) / 0.7, 0, 1),
        "delay": np.log1p(x["delay"]),
        "service": _SERVICE_FRICTION[x["service"]],
        "doubt": 0.7 * x["first"]
        + 0.4 * np.log1p(x["edits"])
        + 0.45 * np.minimum(x["contacts"], 3)
        + 0.3 * (x["hour"] < 5)
        + 0.25 * np.clip(relative_value, 0, 2),
    }


def _base_logit(
    rng: np.random.Generator,
    x: dict[str, np.ndarray],
    c: dict[str, np.ndarray],
    shift: np.ndarray,
) -> np.ndarray:
    """Log-odds of cancelling under control; an unobserved intent term keeps it from being exact."""
    return (
        _BASE_LOGIT
        + shift
        + _CATEGORY_LOGIT[x["category"]]
        + 1.5 * c["payment"]
        + 2.0 * c["stock"]
        + 0.6 * c["delay"]
        + 1.1 * c["service"]
        + 0.7 * c["doubt"]
        - 0.08 * np.minimum(x["prior_orders"], 10)
        + rng.normal(0.0, 0.4, len(shift))
    )


def _arm_effects(x: dict[str, np.ndarray], c: dict[str, np.ndarray]) -> np.ndarray:
    """Change in log-odds of cancelling for every arm (orders x arms); < 0 prevents cancels.

    Each action only works on the cause it addresses: payment rescue on pending or failed
    payments, expediting on delayed orders whose stock is there, a delivery-date update on
    moderate delays and remote addresses (announcing a long delay backfires), reassurance on
    buyer doubt, an agent call on address problems and doubtful large first orders, but it
    annoys loyal customers.
    """
    fixable_payment = np.isin(x["status"], _FIXABLE_STATUS)
    in_stock = np.clip((x["stock"] - 0.5) / 0.3, 0, 1)
    delay = x["delay"]
    large = x["order_value"] > 2 * _CATEGORY_MEDIAN_VALUE[x["category"]]
    loyal = x["prior_orders"] >= _LOYAL_PRIOR_ORDERS
    effects = np.zeros((len(delay), len(ARMS)))
    effects[:, _ARM["reassurance"]] = -0.35 * c["doubt"]
    effects[:, _ARM["expedite"]] = -0.9 * c["delay"] * in_stock
    effects[:, _ARM["payment_rescue"]] = -1.1 * c["payment"] * fixable_payment
    effects[:, _ARM["delivery_update"]] = np.select(
        [(delay >= 1) & (delay <= 4), delay >= 5], [-0.45 * c["delay"], 0.3], 0.0
    ) - 0.35 * (x["service"] == _REMOTE)
    effects[:, _ARM["agent_call"]] = -0.9 * c["service"] - 0.35 * c["doubt"] * large + 0.7 * loyal
    return effects


# --------------------------------------------------------------------------------------------
# Assignment


def _randomised_propensities(orders: int, control_share: float) -> np.ndarray:
    shares = np.full(len(ARMS), (1 - control_share) / len(TREATMENT_ARMS))
    shares[_ARM[CONTROL]] = control_share
    return np.broadcast_to(shares, (orders, len(ARMS)))


def _logged_propensities(x: dict[str, np.ndarray]) -> np.ndarray:
    """The logged targeting policy: a softmax of rule-of-thumb scores, floored for IPW.

    It targets what an operations team would (payment issues, delays, big orders, first orders)
    from observed features only, so propensities are known and depend on the order.
    """
    scores = np.column_stack(  # one column per arm, in ARMS order
        [
            np.full(len(x["delay"]), 1.0),
            0.2 + 1.0 * x["first"] + 0.5 * (x["contacts"] > 0),
            -0.5 + 0.5 * np.minimum(x["delay"], 4) + 0.4 * (x["order_value"] > 150),
            -0.8 + 2.2 * np.isin(x["status"], _FIXABLE_STATUS),
            -0.3 + 0.8 * (x["delay"] > 0) + 0.5 * (x["service"] == _REMOTE),
            -1.0 + 0.8 * (x["order_value"] > 200) + 1.2 * (x["service"] == _UNVERIFIED),
        ]
    )
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    softmax = weights / weights.sum(axis=1, keepdims=True)
    return _PROPENSITY_FLOOR + (1 - len(ARMS) * _PROPENSITY_FLOOR) * softmax


# --------------------------------------------------------------------------------------------
# Output columns


def _labels(levels: tuple[str, ...], codes: np.ndarray) -> pd.Series:
    return pd.Series(np.array(levels)[codes], dtype="str")


def _feature_columns(x: dict[str, np.ndarray]) -> dict[str, object]:
    return {
        "payment_method": _labels(PAYMENT_METHODS, x["method"]),
        "payment_status": _labels(PAYMENT_STATUSES, x["status"]),
        "dispatch_delay_days": x["delay"].astype(np.int64),
        "stock_confidence": x["stock"],
        "serviceability": _labels(SERVICEABILITY, x["service"]),
        "order_edits": x["edits"].astype(np.int64),
        "support_contacts": x["contacts"].astype(np.int64),
        "customer_tenure": _labels(TENURES, (~x["first"]).astype(int)),
        "prior_orders": x["prior_orders"].astype(np.int64),
        "category": _labels(CATEGORIES, x["category"]),
        "device": _labels(DEVICES, x["device"]),
        "hour": x["hour"].astype(np.int64),
    }
