"""The policy against its holdout: what the orders the policy acted on gained over its holdout.

A policy with a random holdout records, for every order, the arm it intended (``policy_arm``;
for a held-out order, the arm it would have given) and whether the order was held out. For
each arm ``a`` the policy intended, the orders that got ``a`` and the held-out orders it
intended ``a`` for are both random parts of the same orders, so their difference in means
measures what ``a`` did for exactly the orders the policy chose it for. Scaled by the number of
orders that got it, it is the value the policy protected with ``a`` this week; the total over
arms is the policy's protected value. Orders explored to another arm, and orders whose logged
arm is not the decided one, are in neither group.

Revenue is compared as the share of order value kept (sum of revenue over sum of order value
in each group, a ratio estimator), scaled by the order value of the acted orders: comparing
mean revenue directly would carry the spread of order values between the groups, several
times the effect. Intervals are normal, with each group's linearised variance; the arms'
estimates are independent (disjoint orders) and add. The estimand is the total of the true
effects over the orders that got their intended arm (a sample total), which this interval
covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from uplift.exceptions import SchemaError
from uplift.experiment.metrics import Z95

__all__ = ["DECISION_COLUMNS", "PolicyReadout", "has_decisions", "read_out_policy"]

#: Columns a log joined with the policy's decisions carries.
DECISION_COLUMNS = ("policy_arm", "holdout")
#: Fewer orders than this in either group leaves an arm out of the readout (and its total):
#: the normal interval of a difference needs spread in both groups (three held-out orders, all
#: kept, would give an interval of zero width).
MIN_GROUP = 30


@dataclass(frozen=True)
class PolicyReadout:
    """Per intended arm and in total: the policy's orders against its holdout.

    ``by_arm`` has one row per treatment arm the policy intended: ``arm``, ``acted`` and
    ``held`` (orders in each group), ``retained_acted``, ``retained_held``, ``uplift`` (retained
    rate difference) with ``uplift_se``, ``uplift_ci_lower``, ``uplift_ci_upper``;
    ``net_per_order`` (revenue kept minus cost per acted order) with its ``net_se``; ``protected``
    (``net_per_order`` x ``acted``), ``protected_ci_lower``, ``protected_ci_upper``;
    ``orders_saved`` (``uplift`` x ``acted``); ``revenue_protected`` (before costs) and
    ``cost`` (of the acted orders); ``predicted_uplift`` and ``predicted_net``
    (the model's mean over both groups, when predictions were given); ``delivered`` (share of
    acted orders the action reached, when logged). ``total`` sums the arms.
    ``unmeasured``: ``arm``, ``acted``, ``held`` of the arms the policy intended for too few
    orders to measure (fewer than ``MIN_GROUP`` in a group); they are in neither table.
    """

    by_arm: pd.DataFrame
    total: Mapping[str, float]
    unmeasured: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["arm", "acted", "held"])
    )


def has_decisions(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` carries the policy's decisions for at least one order."""
    return all(c in frame.columns for c in DECISION_COLUMNS) and bool(
        frame["policy_arm"].notna().any()
    )


def read_out_policy(
    frame: pd.DataFrame,
    *,
    control: str,
    costs: Mapping[str, float] | None = None,
    predicted_uplift: pd.DataFrame | None = None,
    predicted_revenue: pd.DataFrame | None = None,
) -> PolicyReadout:
    """Read out the policy against its holdout from a log joined with its decisions.

    ``frame`` has ``arm``, ``retained``, ``policy_arm``, ``holdout`` and, for net value,
    ``revenue``; orders without a decision (``policy_arm`` missing) are ignored.
    ``predicted_uplift`` / ``predicted_revenue`` hold the model's retained / revenue uplift per
    order and arm (a column per arm, indexed like ``frame``).
    """
    missing = [c for c in ("arm", "retained", *DECISION_COLUMNS) if c not in frame.columns]
    if missing:
        raise SchemaError(f"the policy readout needs column(s) {', '.join(missing)}")
    costs = dict(costs or {})
    decided = frame["policy_arm"].notna().to_numpy()
    held = decided & frame["holdout"].fillna(False).astype(bool).to_numpy()
    intended = frame["policy_arm"].astype(object).to_numpy()
    arm = frame["arm"].astype(str).to_numpy()
    revenue = _revenue(frame)
    rows, small = [], []
    for a in sorted({str(x) for x in intended[decided]} - {control}):
        wanted = decided & (intended == a)
        acted = wanted & ~held & (arm == a)
        holdout = wanted & held
        if acted.sum() < MIN_GROUP or holdout.sum() < MIN_GROUP:
            small.append({"arm": a, "acted": int(acted.sum()), "held": int(holdout.sum())})
            continue
        rows.append(
            _arm_row(frame, a, acted, holdout, revenue, costs.get(a, 0.0))
            | _predicted(a, acted | holdout, predicted_uplift, predicted_revenue, costs)
        )
    by_arm = pd.DataFrame(rows, columns=_COLUMNS)
    unmeasured = pd.DataFrame(small, columns=["arm", "acted", "held"])
    return PolicyReadout(by_arm=by_arm, total=_total(by_arm), unmeasured=unmeasured)


_COLUMNS = [
    "arm",
    "acted",
    "held",
    "retained_acted",
    "retained_held",
    "uplift",
    "uplift_se",
    "uplift_ci_lower",
    "uplift_ci_upper",
    "net_per_order",
    "net_se",
    "protected",
    "protected_se",
    "protected_ci_lower",
    "protected_ci_upper",
    "orders_saved",
    "revenue_protected",
    "cost",
    "predicted_uplift",
    "predicted_net",
    "delivered",
]


def _revenue(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Revenue and order value per order; one unit per order kept when the log has neither."""
    if "revenue" in frame.columns and "order_value" in frame.columns:
        return frame["revenue"].to_numpy(np.float64), frame["order_value"].to_numpy(np.float64)
    retained = frame["retained"].to_numpy(np.float64)
    return retained, np.ones_like(retained)


def _ratio(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """sum(y) / sum(s) and its linearised variance."""
    ratio = y.sum() / s.sum()
    residual = y - ratio * s
    return float(ratio), float(residual.var(ddof=1) * y.size / s.sum() ** 2)


def _difference(
    y: np.ndarray, s: np.ndarray, acted: np.ndarray, held: np.ndarray
) -> tuple[float, float]:
    """Difference of the groups' ratios sum(y) / sum(s) and its standard error."""
    ratio_a, var_a = _ratio(y[acted], s[acted])
    ratio_h, var_h = _ratio(y[held], s[held])
    return ratio_a - ratio_h, float(np.sqrt(var_a + var_h))


def _arm_row(
    frame: pd.DataFrame,
    arm: str,
    acted: np.ndarray,
    held: np.ndarray,
    revenue: tuple[np.ndarray, np.ndarray],
    cost: float,
) -> dict[str, object]:
    retained = frame["retained"].to_numpy(np.float64)
    ones = np.ones_like(retained)
    uplift, uplift_se = _difference(retained, ones, acted, held)
    kept, kept_se = _difference(*revenue, acted, held)
    value = revenue[1]
    n = int(acted.sum())
    at_risk = float(value[acted].sum())
    # The arm's cost is paid for every acted order.
    net, net_se = (kept * at_risk - cost * n) / n, kept_se * at_risk / n
    revenue_protected = kept * at_risk
    delivered = np.nan
    if "delivered" in frame.columns:
        reached = pd.to_numeric(frame["delivered"], errors="coerce").to_numpy(np.float64)[acted]
        if np.isfinite(reached).any():
            delivered = float(np.nanmean(reached))
    return {
        "arm": arm,
        "acted": n,
        "held": int(held.sum()),
        "retained_acted": float(retained[acted].mean()),
        "retained_held": float(retained[held].mean()),
        "uplift": uplift,
        "uplift_se": uplift_se,
        "uplift_ci_lower": uplift - Z95 * uplift_se,
        "uplift_ci_upper": uplift + Z95 * uplift_se,
        "net_per_order": net,
        "net_se": net_se,
        "protected": net * n,
        "protected_se": net_se * n,
        "protected_ci_lower": (net - Z95 * net_se) * n,
        "protected_ci_upper": (net + Z95 * net_se) * n,
        "orders_saved": uplift * n,
        "revenue_protected": revenue_protected,
        "cost": cost * n,
        "delivered": delivered,
    }


def _predicted(
    arm: str,
    rows: np.ndarray,
    uplift: pd.DataFrame | None,
    revenue: pd.DataFrame | None,
    costs: Mapping[str, float],
) -> dict[str, float]:
    out = {"predicted_uplift": np.nan, "predicted_net": np.nan}
    if uplift is not None and arm in uplift.columns:
        out["predicted_uplift"] = float(uplift[arm].to_numpy(np.float64)[rows].mean())
    if revenue is not None and arm in revenue.columns:
        predicted = revenue[arm].to_numpy(np.float64)[rows].mean()
        out["predicted_net"] = float(predicted - costs.get(arm, 0.0))
    return out


def _total(by_arm: pd.DataFrame) -> dict[str, float]:
    """The arms summed: protected value and orders saved, with the arms' variances added."""
    acted = by_arm["acted"].to_numpy(np.float64)
    protected = float(by_arm["protected"].sum())
    se = float(np.sqrt((by_arm["protected_se"] ** 2).sum()))
    saved_se = float(np.sqrt(((by_arm["uplift_se"] * acted) ** 2).sum()))
    predicted = by_arm["predicted_net"].to_numpy(np.float64) * acted
    return {
        "acted": float(acted.sum()),
        "held": float(by_arm["held"].sum()),
        "protected": protected,
        "protected_se": se,
        "protected_ci_lower": protected - Z95 * se,
        "protected_ci_upper": protected + Z95 * se,
        "orders_saved": float(by_arm["orders_saved"].sum()),
        "revenue_protected": float(by_arm["revenue_protected"].sum()),
        "cost": float(by_arm["cost"].sum()),
        "orders_saved_se": saved_se,
        "predicted_protected": float(predicted.sum()) if len(predicted) else np.nan,
    }
