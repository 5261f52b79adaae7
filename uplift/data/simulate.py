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

Three named worlds (:data:`WORLDS`) set how hard the world is to learn:

* ``easy``: large effects that are step functions of observed signals, nothing missing, every
  action reaches its customer. Models learn it well; kept for tests that need large effects.
* ``realistic``: effects of the size of real post-purchase nudges (a message moves retention by
  a fraction of a point to about two points, a payment rescue by up to about ten points on a
  failed payment), smooth in continuous signals as well as stepwise in categories, modified by
  an unobserved responsiveness so that the observed signals explain at most about 60% of the
  true uplift's variance; stock confidence unknown for marketplace orders and device sometimes
  unknown; actions that do not reach the customer (``delivered`` = 0: an unanswered call, a
  bounced message) at rates that depend on the arm and the customer; effects that drift with
  the season as well as base rates.
* ``hard``: each of these pushed further.

The truth holds the intent-to-treat probability ``p_cancel_<arm>`` (what deciding the arm
does, non-delivery included) and ``p_delivered_<arm>``; an order whose action is not
delivered cancels with its control probability. It also holds where each order's risk comes
from: the causes' part of its control log-odds by family of causes (:mod:`uplift.data.causes`)
and the family that pushes it most (see :func:`simulate`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy.special import betainc, betaincinv

from uplift.data.causes import FAMILIES, OTHER
from uplift.exceptions import ConfigError

__all__ = [
    "ARMS",
    "ARM_COSTS",
    "CONTROL",
    "FEATURES",
    "TREATMENT_ARMS",
    "WORLDS",
    "SignalDraws",
    "SimulatedWorld",
    "World",
    "delivered_column",
    "explained_share",
    "get_world",
    "pending_orders",
    "propensity_matrix",
    "signal_draws",
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
OUTCOME_COLUMNS: tuple[str, ...] = (
    "arm",
    "cancelled",
    "retained",
    "revenue",
    "propensity",
    "delivered",
)

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
#: Weight of each cause in the control log-odds, and the family of causes it belongs to.
_CAUSE_WEIGHT = {"payment": 1.5, "stock": 2.0, "delay": 0.6, "service": 1.1, "doubt": 0.7}
_CAUSE_FAMILY = {
    "payment": "payment",
    "stock": "stock",
    "delay": "fulfilment",
    "service": "serviceability",
    "doubt": "confidence",
}
_LOYALTY_WEIGHT = 0.08  # per prior order, up to _LOYALTY_CAP: loyalty lowers buyer doubt
_LOYALTY_CAP = 10
_LOW_STOCK = 0.7  # stock confidence below which stock doubt is a cause
_MAX_PREVALENCE = 0.95  # a surged share of orders is capped here
_LOYAL_PRIOR_ORDERS = 5
_INTENT_SD = 0.4  # sd of the unobserved intent term of the log-odds of cancelling
#: Arms that act on every order (a message, a call), so that unobserved noise reaches them all.
_MAX_RESPONSE = 4.0  # cap of the unobserved responsiveness multiplier
_REACH_EVERYONE = ("reassurance", "delivery_update", "agent_call")
#: (period in weeks, phase) of the seasonal wave of each treatment arm's effect strength.
_EFFECT_WAVES = ((8.0, 0.7), (10.0, 2.1), (7.0, 3.9), (9.0, 5.0), (11.0, 1.3))
_PROPENSITY_FLOOR = 0.03  # every logged-policy propensity is at least this, so IPW stays sane
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class World:
    """How hard the order world is to learn; see the module's description of the presets.

    ``effect_scale`` multiplies each arm's log-odds effect. ``smooth`` makes effects vary
    smoothly with continuous signals. ``responsiveness`` is the spread (sd of the log) of an
    unobserved per-order multiplier of every effect, ``effect_noise`` the sd of an unobserved
    additive log-odds effect of the arms that reach every order. ``marketplace_share`` of
    orders have unknown stock confidence, ``device_unknown`` unknown device. ``undelivered``
    is each treatment arm's share of actions that do not reach a returning customer, and
    ``first_order_undelivered`` multiplies it for first orders. ``effect_wave`` is the
    amplitude of the seasonal drift of each arm's effect.
    """

    name: str
    effect_scale: dict[str, float]
    smooth: bool = False
    responsiveness: float = 0.0
    effect_noise: float = 0.0
    marketplace_share: float = 0.0
    device_unknown: float = 0.0
    undelivered: dict[str, float] = field(default_factory=dict)
    first_order_undelivered: float = 1.0
    effect_wave: float = 0.0


_MESSAGES = ("reassurance", "delivery_update")
WORLDS: dict[str, World] = {
    "easy": World("easy", effect_scale=dict.fromkeys(TREATMENT_ARMS, 1.0)),
    "realistic": World(
        "realistic",
        effect_scale={
            "reassurance": 0.32,
            "expedite": 0.35,
            "payment_rescue": 0.28,
            "delivery_update": 0.32,
            "agent_call": 0.35,
        },
        smooth=True,
        responsiveness=0.9,
        effect_noise=0.12,
        marketplace_share=0.25,
        device_unknown=0.08,
        undelivered={
            "reassurance": 0.08,
            "expedite": 0.03,
            "payment_rescue": 0.10,
            "delivery_update": 0.08,
            "agent_call": 0.35,
        },
        first_order_undelivered=1.6,
        effect_wave=0.25,
    ),
    "hard": World(
        "hard",
        effect_scale={
            "reassurance": 0.22,
            "expedite": 0.25,
            "payment_rescue": 0.22,
            "delivery_update": 0.22,
            "agent_call": 0.25,
        },
        smooth=True,
        responsiveness=1.2,
        effect_noise=0.12,
        marketplace_share=0.40,
        device_unknown=0.20,
        undelivered={
            "reassurance": 0.15,
            "expedite": 0.06,
            "payment_rescue": 0.18,
            "delivery_update": 0.15,
            "agent_call": 0.50,
        },
        first_order_undelivered=1.5,
        effect_wave=0.5,
    ),
}


def get_world(world: str | World) -> World:
    """The preset named ``world`` (``easy``, ``realistic`` or ``hard``), or ``world`` itself."""
    if isinstance(world, World):
        return world
    if world not in WORLDS:
        raise ConfigError(f"world must be one of {', '.join(WORLDS)}; got {world!r}")
    return WORLDS[world]


@dataclass(frozen=True, eq=False)
class SimulatedWorld:
    """A simulated log and its ground truth.

    ``log`` holds what a shop records (order_id, arm, cancelled, order_value, revenue,
    propensity, assigned_at, features). ``truth`` holds, per order_id, ``p_cancel_<arm>`` (the
    true probability of cancellation under each arm), ``p_delivered_<arm>``,
    ``propensity_<arm>`` (the probability with which each arm could have been chosen) and the
    cause of the order's risk (``true_logit_<family>``, ``true_cause``, ``true_cause_share``;
    see :func:`simulate`). Never train on ``truth``.
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
    effect_strength: np.ndarray  # weeks x arms


def simulate(
    orders: int,
    weeks: int = 4,
    seed: int = 0,
    *,
    world: str | World = "realistic",
    logged_policy: bool = False,
    control_share: float = 0.2,
    start_week: str = "2026-W40",
    drift: float = 1.0,
    effect_drift: float = 0.0,
    first_order_id: int = 1,
    cause_surge: Mapping[str, float] | None = None,
) -> SimulatedWorld:
    """Simulate ``orders`` eligible orders over ``weeks`` ISO weeks from ``start_week``.

    ``world`` names the preset (``easy``, ``realistic``, ``hard``; see :data:`WORLDS`).
    Arms are randomised with a control holdout of ``control_share`` and the rest split evenly
    over the treatment arms, or, with ``logged_policy``, chosen by a targeting policy with known
    non-uniform propensities. ``drift`` scales how much base rates and the order mix move from
    week to week (0 = none). ``effect_drift`` is the fraction of every arm's effect lost by the
    last simulated week, linearly from none in the first (a single week counts as the last;
    negative values strengthen effects, values above 1 reverse them). Same seed, same world.

    ``cause_surge`` multiplies how many orders carry a family of causes in every simulated
    week, e.g. ``{"stock": 2.0}``: payment (pending and failed payments), stock (orders of low
    stock confidence), fulfilment (delayed dispatches), serviceability (remote and unverified
    addresses), confidence (edits, support contacts, and the odds of a first order, as first
    orders are already a third of orders); shares are capped below 1 (at 90% to 95%). An order
    carrying a cause carries it as strongly as without the surge; what follows from the cause
    follows too (more doubtful stock, more delays; more first orders, more cash on delivery).

    Besides probabilities and propensities, the truth holds the cause of each order's risk.
    ``true_logit_<family>`` is the family's part of the order's control log-odds (for
    ``other``: the category and the week's base rate) *centred on its mean over this call's
    orders*, so it says how much more (> 0) or less this family pushes this order to cancel
    than it pushes an average order, like SHAP values centred on the data's mean (so two calls,
    e.g. two weeks simulated apart, are centred on their own means). The centred parts add up
    to the control log-odds minus its mean, less the centred unobserved intent, which is no
    cause. ``true_cause`` is the family of largest centred part, or
    ``none`` when no part is above 0 (an order no riskier than average on any count);
    ``true_cause_share`` is that part over the sum of the positive parts (NaN for ``none``).
    """
    spec = get_world(world)
    _validate(orders, weeks, control_share, drift, effect_drift, first_order_id)
    surge = _validate_surge(cause_surge)
    rng = np.random.default_rng(seed)
    # What the harder worlds add is drawn from its own stream, so the easy world stays as it was.
    hidden = np.random.default_rng([seed, 1])
    plan = _plan_weeks(_parse_week(start_week), weeks, drift, effect_drift, spec.effect_wave)
    week, assigned_at, hour = _draw_times(rng, orders, plan)
    x = _draw_orders(rng, week, hour, plan, surge)
    causes = _causes(x)
    base = _base_logit(x, causes, plan.base_shift[week]) + rng.normal(0.0, _INTENT_SD, orders)
    effects = _arm_effects(x, causes, spec, _Modifiers.draw(hidden, orders, spec))
    p_if_delivered = _logistic(base[:, None] + effects * plan.effect_strength[week])
    p_delivered = _delivery(x, spec)
    p_control = p_if_delivered[:, :1]
    p_cancel = p_delivered * p_if_delivered + (1 - p_delivered) * p_control
    if logged_policy:
        propensities = _logged_propensities(x)
    else:
        propensities = _randomised_propensities(orders, control_share)
    arm = _draw_categorical(rng, propensities)
    rows = np.arange(orders)
    delivered = hidden.random(orders) < p_delivered[rows, arm]
    p_outcome = np.where(delivered, p_if_delivered[rows, arm], p_control[:, 0])
    cancelled = (rng.random(orders) < p_outcome).astype(np.int64)
    order_id = np.arange(first_order_id, first_order_id + orders, dtype=np.int64)
    log = pd.DataFrame(
        {
            "order_id": order_id,
            "arm": _labels(ARMS, arm),
            "cancelled": cancelled,
            "order_value": x["order_value"],
            "revenue": x["order_value"] * (1 - cancelled),
            "propensity": propensities[rows, arm],
            "delivered": delivered_column(delivered, arm != _ARM[CONTROL]),
            "assigned_at": assigned_at,
            **_feature_columns(x, _hide(hidden, orders, spec)),
        }
    )
    truth = pd.DataFrame(
        {
            "order_id": order_id,
            **{f"p_cancel_{a}": p_cancel[:, i] for i, a in enumerate(ARMS)},
            **{f"p_delivered_{a}": p_delivered[:, i] for i, a in enumerate(ARMS) if i},
            **{f"propensity_{a}": propensities[:, i] for i, a in enumerate(ARMS)},
            **_cause_columns(x, causes, plan.base_shift[week]),
        }
    )
    return SimulatedWorld(log=log, truth=truth, logged_policy=logged_policy)


def delivered_column(delivered: np.ndarray, treated: np.ndarray) -> pd.Series:
    """The log's ``delivered``: 1 or 0 for orders given an action, missing for control."""
    return pd.Series(pd.array(np.where(treated, delivered.astype(int), 0), dtype="Int8")).where(
        treated
    )


@dataclass(frozen=True, eq=False)
class SignalDraws:
    """Orders drawn once, and their cancellation probabilities under ``draws`` draws of what
    the shop does not see (intent, responsiveness, effect noise). ``p_cancel`` is draws x
    orders x arms (intent-to-treat); ``order_value`` per order; ``causes``, when given, the
    cause columns of :func:`simulate`'s truth per order (the same in every draw: the intent
    is no cause)."""

    p_cancel: np.ndarray
    order_value: np.ndarray
    causes: pd.DataFrame | None = None

    def truth(self, draw: int | None = None) -> pd.DataFrame:
        """A truth frame (``order_id``, ``p_cancel_<arm>``, and the causes when known): one
        draw's, or with ``None`` the expectation given the signals (the mean over draws: what a
        perfect model could know)."""
        p = self.p_cancel.mean(axis=0) if draw is None else self.p_cancel[draw]
        causes = {} if self.causes is None else {c: self.causes[c] for c in self.causes.columns}
        return pd.DataFrame(
            {
                "order_id": np.arange(1, p.shape[0] + 1),
                **{f"p_cancel_{a}": p[:, i] for i, a in enumerate(ARMS)},
                **causes,
            }
        )


def signal_draws(
    world: str | World = "realistic", orders: int = 20_000, seed: int = 0, draws: int = 100
) -> SignalDraws:
    """One week of orders with ``draws`` draws of their unobserved terms (see :class:`SignalDraws`).

    The order's true stock is held fixed even where the shop does not see it, so the
    expectation over draws knows slightly more than the observed signals.
    """
    spec = get_world(world)
    rng = np.random.default_rng(seed)
    plan = _plan_weeks(_parse_week("2026-W40"), 1, 1.0, 0.0, spec.effect_wave)
    week, _, hour = _draw_times(rng, orders, plan)
    x = _draw_orders(rng, week, hour, plan)
    causes = _causes(x)
    base = _base_logit(x, causes, plan.base_shift[week])
    p_delivered = _delivery(x, spec)
    p_cancel = np.empty((draws, orders, len(ARMS)))
    for k in range(draws):
        effects = _arm_effects(x, causes, spec, _Modifiers.draw(rng, orders, spec))
        p = _logistic((base + rng.normal(0.0, _INTENT_SD, orders))[:, None] + effects)
        p_cancel[k] = p_delivered * p + (1 - p_delivered) * p[:, :1]
    causes_frame = pd.DataFrame(_cause_columns(x, causes, plan.base_shift[week]))
    return SignalDraws(p_cancel, x["order_value"], causes_frame)


def explained_share(
    world: str | World = "realistic", orders: int = 20_000, seed: int = 0, draws: int = 100
) -> pd.Series:
    """Per treatment arm, the share of the true retained uplift's variance that signals explain.

    The uplift of an order varies with its signals and with what the shop does not see (the
    unobserved intent, responsiveness and effect noise). The share is Var(E[uplift | order]) /
    Var(uplift), with the expectation over ``draws`` draws of the unobserved terms for the same
    orders (Monte Carlo, :func:`signal_draws`). The order's true stock is held fixed even where
    the shop does not see it, so the share is an upper bound on what the observed signals can
    explain.
    """
    p_cancel = signal_draws(world, orders, seed, draws).p_cancel
    uplift = p_cancel[:, :, :1] - p_cancel[:, :, 1:]
    explained = uplift.mean(axis=0).var(axis=0)
    # Monte Carlo noise inflates the variance of the mean by the within-order variance / draws.
    within = uplift.var(axis=0, ddof=1).mean(axis=0) / draws
    total = uplift.reshape(-1, len(TREATMENT_ARMS)).var(axis=0)
    name = get_world(world).name
    return pd.Series((explained - within) / total, index=list(TREATMENT_ARMS), name=name)


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


def _validate_surge(cause_surge: Mapping[str, float] | None) -> dict[str, float]:
    """``cause_surge`` as a plain dict, after checking its families and factors."""
    surge = dict(cause_surge or {})
    for family, factor in surge.items():
        if family not in FAMILIES:
            raise ConfigError(
                f"cause_surge names an unknown family {family!r}; families are "
                + ", ".join(FAMILIES)
            )
        real = isinstance(factor, numbers.Real) and not isinstance(factor, bool)
        if not (real and np.isfinite(factor) and factor > 0):
            raise ConfigError(
                f"cause_surge[{family!r}] must be a finite number > 0 (1 = no surge); "
                f"got {factor!r}"
            )
    return {family: float(factor) for family, factor in surge.items()}


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


def _plan_weeks(
    first_monday: date, weeks: int, drift: float, effect_drift: float, effect_wave: float = 0.0
) -> _Weeks:
    """Week conditions as smooth seasonal waves of the calendar week (periods 5 to 13 weeks).

    Each arm's effect strength follows its own wave of amplitude ``effect_wave`` (times
    ``drift``) on top of the linear ``effect_drift``.

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
        effect_strength=(1.0 - effect_drift * position)[:, None]
        * (1.0 + effect_wave * np.column_stack([0 * t, *(wave(p, q) for p, q in _EFFECT_WAVES)])),
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
    rng: np.random.Generator,
    week: np.ndarray,
    hour: np.ndarray,
    plan: _Weeks,
    surge: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """The orders' signals; ``surge`` multiplies the share of orders carrying a family's cause.

    Without a surge every draw is the same call with the same arguments as before surges
    existed, so the orders are the same bit for bit.
    """
    surge = surge or {}
    n = len(week)
    category = _draw_categorical(rng, plan.category_share[week])
    confidence = surge.get("confidence", 1.0)
    first_share = plan.first_order_share[week]
    if confidence != 1.0:
        # The odds, not the share: a third of orders are first orders, and twice as many would
        # make them the norm, the cause of no order's excess risk.
        first_share = first_share * confidence / (1 - first_share + first_share * confidence)
    first = rng.random(n) < first_share
    returning = (~first).astype(int)
    prior_orders = np.where(first, 0, rng.geometric(0.22, n))
    device = _draw_categorical(rng, _DEVICE_SHARE[returning])
    method = _draw_categorical(rng, _METHOD_SHARE[returning])
    factor = plan.payment_factor[week] * surge.get("payment", 1.0)
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
    stock_a = _CATEGORY_STOCK_BETA_A[category]
    stock = rng.beta(stock_a, 1.4)
    if surge.get("stock", 1.0) != 1.0:
        stock = _surge_low_stock(stock, stock_a, surge["stock"])
    stock = np.round(stock, 2)
    p_delay = plan.delay_rate[week] + 0.6 * (1 - stock) ** 2
    delayed = rng.random(n) < np.clip(p_delay * surge.get("fulfilment", 1.0), 0, 0.95)
    delay = np.where(delayed, 1 + rng.poisson(1.0 + 2.5 * (1 - stock)), 0)
    service_share = _SERVICE_SHARE[returning]
    if surge.get("serviceability", 1.0) != 1.0:
        service_share = _surge_shares(service_share, surge["serviceability"])
    service = _draw_categorical(rng, service_share)
    edits = rng.poisson((0.10 + 0.12 * first) * confidence)
    contacts = rng.poisson(
        (
            0.04
            + 0.25 * (delay > 0)
            + 0.45 * np.isin(status, _FIXABLE_STATUS)
            + 0.3 * (service == _UNVERIFIED)
        )
        * confidence
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


def _surge_low_stock(stock: np.ndarray, a: np.ndarray, factor: float) -> np.ndarray:
    """Stock confidences (Beta(a, 1.4) draws) with ``factor`` times as many below 0.7.

    A monotone map of the draws' quantiles: the low ones spread over a ``factor`` times larger
    share, so that a low-stock order is as short of stock as without the surge.
    """
    q = betainc(a, 1.4, _LOW_STOCK)  # today's share of low stock, per order's category
    target = np.minimum(q * factor, np.maximum(q, _MAX_PREVALENCE))
    u = betainc(a, 1.4, stock)
    moved = np.where(u < target, u * q / target, q + (u - target) * (1 - q) / (1 - target))
    return np.asarray(betaincinv(a, 1.4, moved))


def _surge_shares(shares: np.ndarray, factor: float) -> np.ndarray:
    """Rows of (first level, problem levels...) shares with the problem levels' share times
    ``factor``, capped, and the first level taking up the rest."""
    problems = shares[:, 1:]
    total = problems.sum(axis=1, keepdims=True)
    scaled = problems * (np.minimum(total * factor, _MAX_PREVALENCE) / total)
    return np.column_stack([1 - scaled.sum(axis=1), scaled])


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
    x: dict[str, np.ndarray], c: dict[str, np.ndarray], shift: np.ndarray
) -> np.ndarray:
    """Log-odds of cancelling under control, before the unobserved intent term."""
    # Summed in this order since the start: another order would move the draws' last bits.
    w = _CAUSE_WEIGHT
    return (
        _BASE_LOGIT
        + shift
        + _CATEGORY_LOGIT[x["category"]]
        + w["payment"] * c["payment"]
        + w["stock"] * c["stock"]
        + w["delay"] * c["delay"]
        + w["service"] * c["service"]
        + w["doubt"] * c["doubt"]
        - _LOYALTY_WEIGHT * np.minimum(x["prior_orders"], _LOYALTY_CAP)
    )


def _family_logits(
    x: dict[str, np.ndarray], c: dict[str, np.ndarray], shift: np.ndarray
) -> dict[str, np.ndarray]:
    """Each family's part of :func:`_base_logit` (``other``: category and week), uncentred;
    the parts add up to it less the constant baseline."""
    parts = {_CAUSE_FAMILY[cause]: weight * c[cause] for cause, weight in _CAUSE_WEIGHT.items()}
    parts["confidence"] = parts["confidence"] - _LOYALTY_WEIGHT * np.minimum(
        x["prior_orders"], _LOYALTY_CAP
    )
    parts[OTHER] = _CATEGORY_LOGIT[x["category"]] + shift
    return {family: parts[family] for family in (*FAMILIES, OTHER)}


def _cause_columns(
    x: dict[str, np.ndarray], c: dict[str, np.ndarray], shift: np.ndarray
) -> dict[str, object]:
    """The truth's cause columns: centred family parts, the dominant family and its share."""
    families = (*FAMILIES, OTHER)
    raw = _family_logits(x, c, shift)
    centred = np.column_stack([raw[f] - raw[f].mean() for f in families])
    top = centred.argmax(axis=1)
    largest = centred[np.arange(len(centred)), top]
    positive = np.where(centred > 0, centred, 0.0).sum(axis=1)
    risky = largest > 0
    cause = np.where(risky, np.array(families)[top], "none")
    share = np.divide(largest, positive, out=np.full(len(top), np.nan), where=risky)
    return {
        **{f"true_logit_{f}": centred[:, k] for k, f in enumerate(families)},
        "true_cause": pd.Series(cause, dtype="str"),
        "true_cause_share": share,
    }


def _logistic(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


@dataclass(frozen=True)
class _Modifiers:
    """The unobserved part of every order's effects: a multiplier and an additive term per arm."""

    multiplier: np.ndarray  # orders x arms, mean 1
    noise: np.ndarray  # orders x arms, mean 0

    @classmethod
    def draw(cls, rng: np.random.Generator, orders: int, spec: World) -> _Modifiers:
        shape = (orders, len(ARMS))
        if spec.responsiveness == 0 and spec.effect_noise == 0:
            return cls(np.ones(shape), np.zeros(shape))
        # A responsiveness shared by an order's arms (some customers answer any nudge) and one
        # per arm: log-normal with mean 1, capped so that no order responds implausibly much.
        shared = rng.normal(size=(orders, 1))
        own = rng.normal(size=shape)
        s = spec.responsiveness
        multiplier = np.minimum(np.exp(s * (0.6 * shared + 0.8 * own) - s**2 / 2), _MAX_RESPONSE)
        noise = rng.normal(0.0, spec.effect_noise, shape)
        noise[:, [_ARM[a] for a in ARMS if a not in _REACH_EVERYONE]] = 0.0
        return cls(multiplier, noise)


def _delivery(x: dict[str, np.ndarray], spec: World) -> np.ndarray:
    """P(the action reaches the customer) per order and arm; control's column is 1."""
    first = np.where(x["first"], spec.first_order_undelivered, 1.0)
    p = np.ones((len(first), len(ARMS)))
    for arm, share in spec.undelivered.items():
        p[:, _ARM[arm]] = np.clip(1.0 - share * first, 0.05, 1.0)
    return p


def _hide(rng: np.random.Generator, orders: int, spec: World) -> dict[str, np.ndarray]:
    """Which orders' signals the shop does not see: stock of marketplace sellers, device."""
    return {
        "stock": rng.random(orders) < spec.marketplace_share,
        "device": rng.random(orders) < spec.device_unknown,
    }


def _arm_effects(
    x: dict[str, np.ndarray], c: dict[str, np.ndarray], spec: World, hidden: _Modifiers
) -> np.ndarray:
    """Change in log-odds of cancelling for every arm (orders x arms); < 0 prevents cancels.

    Each action only works on the cause it addresses: payment rescue on pending or failed
    payments, expediting on delayed orders whose stock is there, a delivery-date update on
    moderate delays and remote addresses (announcing a long delay backfires), reassurance on
    buyer doubt, an agent call on address problems and doubtful large first orders, but it
    annoys loyal customers. The world's scale, smoothness and unobserved modifiers apply.
    """
    signal = _smooth_signals(x) if spec.smooth else _step_signals(x)
    delay = x["delay"]
    effects = np.zeros((len(delay), len(ARMS)))
    effects[:, _ARM["reassurance"]] = -0.35 * c["doubt"] * signal["evening"] * signal["value"]
    effects[:, _ARM["expedite"]] = -0.9 * c["delay"] * signal["in_stock"]
    effects[:, _ARM["payment_rescue"]] = (
        -1.1 * c["payment"] * np.isin(x["status"], _FIXABLE_STATUS) * signal["value"]
    )
    effects[:, _ARM["delivery_update"]] = (
        -0.45 * c["delay"] * signal["moderate_delay"]
        + 0.3 * signal["long_delay"]
        - 0.35 * (x["service"] == _REMOTE)
    )
    effects[:, _ARM["agent_call"]] = (
        -0.9 * c["service"] - 0.35 * c["doubt"] * signal["large"] + 0.7 * signal["loyal"]
    )
    scale = np.array([0.0, *(spec.effect_scale[a] for a in TREATMENT_ARMS)])
    return scale * (effects * hidden.multiplier + hidden.noise)


def _step_signals(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The easy world's modifiers: steps of the observed signals."""
    delay = x["delay"]
    ones = np.ones(len(delay))
    return {
        "evening": ones,
        "value": ones,
        "in_stock": np.clip((x["stock"] - 0.5) / 0.3, 0, 1),
        "moderate_delay": ((delay >= 1) & (delay <= 4)).astype(float),
        "long_delay": (delay >= 5).astype(float),
        "large": (x["order_value"] > 2 * _CATEGORY_MEDIAN_VALUE[x["category"]]).astype(float),
        "loyal": (x["prior_orders"] >= _LOYAL_PRIOR_ORDERS).astype(float),
    }


def _smooth_signals(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The harder worlds' modifiers: smooth in value, hour, stock, delay and loyalty."""
    delay = x["delay"]
    relative_value = np.log(x["order_value"] / _CATEGORY_MEDIAN_VALUE[x["category"]])
    return {
        "evening": 1.0 + 0.3 * np.cos(2 * np.pi * (x["hour"] - 21) / 24),
        "value": 1.0 + 0.35 * np.tanh(relative_value),
        "in_stock": _logistic((x["stock"] - 0.62) / 0.07),
        "moderate_delay": _logistic((4.5 - delay) * 1.5),
        "long_delay": _logistic((delay - 4.5) * 1.5),
        "large": _logistic((relative_value - np.log(2)) / 0.25),
        "loyal": _logistic(x["prior_orders"] - _LOYAL_PRIOR_ORDERS + 0.5),
    }


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


def _feature_columns(x: dict[str, np.ndarray], hidden: dict[str, np.ndarray]) -> dict[str, object]:
    device = _labels(DEVICES, x["device"]).where(~hidden["device"])
    return {
        "payment_method": _labels(PAYMENT_METHODS, x["method"]),
        "payment_status": _labels(PAYMENT_STATUSES, x["status"]),
        "dispatch_delay_days": x["delay"].astype(np.int64),
        "stock_confidence": np.where(hidden["stock"], np.nan, x["stock"]),
        "serviceability": _labels(SERVICEABILITY, x["service"]),
        "order_edits": x["edits"].astype(np.int64),
        "support_contacts": x["contacts"].astype(np.int64),
        "customer_tenure": _labels(TENURES, (~x["first"]).astype(int)),
        "prior_orders": x["prior_orders"].astype(np.int64),
        "category": _labels(CATEGORIES, x["category"]),
        "device": device,
        "hour": x["hour"].astype(np.int64),
    }
