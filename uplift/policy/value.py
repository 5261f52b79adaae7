"""Net value per order and arm, the model's unconstrained best arm, and simple policies.

Net value of arm ``A`` for order ``o`` is its expected retained revenue uplift minus what the
arm costs: a fixed cost per use plus, for a voucher, a cost paid only when the order is kept,
so ``cost = cost_A + voucher_A * P(retained | A)`` with ``P(retained | A) = retained_base +
retained_uplift_A``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, SchemaError, describe_rows

FloatArray = NDArray[np.float64]
REVENUE_PREFIX = "revenue_uplift_"
RETAINED_PREFIX = "retained_uplift_"
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
