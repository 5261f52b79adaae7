"""Outcomes of given orders under a given assignment, drawn from the order world's truth.

This is what closes the loop in simulation: the policy decides the arms of pending orders
(a queue from ``uplift rank``, with each decision's propensity), and the simulator draws what
those orders then do, from the same true probabilities the orders were simulated with. The
result is the experiment log the shop would record, ready for the next week's readout and
training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from uplift.data.simulate import ARMS, CONTROL, delivered_column
from uplift.exceptions import SchemaError, describe_rows

__all__ = ["simulate_outcomes"]

#: Columns a log gets from the assignment; the orders must not carry them already.
_DECISION_COLUMNS = ("arm", "propensity")
_OUTCOME_COLUMNS = ("cancelled", "revenue", "delivered")


def simulate_outcomes(
    orders: pd.DataFrame,
    truth: pd.DataFrame,
    assignment: pd.DataFrame,
    *,
    seed: int = 0,
    source: str = "assignment",
) -> pd.DataFrame:
    """The log of ``orders`` when each gets the arm ``assignment`` gave it.

    ``orders`` are pending orders (``order_id``, ``order_value`` and the features, as
    :func:`~uplift.data.simulate.pending_orders` leaves them); ``truth`` is the world's truth
    for them (``order_id`` and ``p_cancel_<arm>``); ``assignment`` has ``order_id``, ``arm``
    and ``propensity`` per order (a queue written by ``uplift rank`` has them). Each order is
    cancelled with its true probability under its assigned arm; where the truth holds
    ``p_delivered_<arm>``, the action reaches the customer with that probability (``delivered``)
    and an undelivered order cancels with its control probability. Revenue is the order value
    of the orders kept. Same seed, same outcomes.
    """
    _check_columns(orders, ("order_id", "order_value"), "orders")
    _check_columns(truth, ("order_id", *(f"p_cancel_{a}" for a in ARMS)), "truth")
    _check_columns(assignment, ("order_id", *_DECISION_COLUMNS), source)
    taken = [c for c in (*_DECISION_COLUMNS, *_OUTCOME_COLUMNS) if c in orders.columns]
    if taken:
        raise SchemaError(
            f"orders already hold {', '.join(taken)}: give pending orders, before any decision"
        )
    decided = _aligned(assignment, orders["order_id"], source)
    arms = decided["arm"].astype(str).to_numpy()
    unknown = ~np.isin(arms, ARMS)
    if unknown.any():
        names = ", ".join(sorted(set(arms[unknown])))
        raise SchemaError(
            f"{source}: column arm holds arms the order world does not have ({names}) in "
            f"{describe_rows(np.flatnonzero(unknown) + 1)}"
        )
    propensity = pd.to_numeric(decided["propensity"], errors="coerce").to_numpy(np.float64)
    bad = ~((propensity > 0) & (propensity <= 1))
    if bad.any():
        raise SchemaError(
            f"{source}: column propensity must lie in (0, 1] in "
            f"{describe_rows(np.flatnonzero(bad) + 1)}"
        )
    known = _aligned(truth, orders["order_id"], "truth")
    rows = np.arange(len(orders))
    column = pd.Index(ARMS).get_indexer(pd.Index(arms))
    p_cancel = known[[f"p_cancel_{a}" for a in ARMS]].to_numpy(np.float64)
    p_delivered = np.ones_like(p_cancel)
    for k, arm in enumerate(ARMS):
        if f"p_delivered_{arm}" in known.columns:
            p_delivered[:, k] = known[f"p_delivered_{arm}"].to_numpy(np.float64)
    # The truth's p_cancel is intent-to-treat: d * p_if_delivered + (1 - d) * p_control.
    p_control = p_cancel[:, ARMS.index(CONTROL)]
    d = p_delivered[rows, column]
    rng = np.random.default_rng(seed)
    delivered = rng.random(len(orders)) < d
    p_if_delivered = (p_cancel[rows, column] - (1 - d) * p_control) / d
    p = np.clip(np.where(delivered, p_if_delivered, p_control), 0.0, 1.0)
    cancelled = (rng.random(len(orders)) < p).astype(np.int64)
    value = orders["order_value"].to_numpy(np.float64)
    log = orders.reset_index(drop=True).copy()
    log.insert(1, "arm", arms)
    log.insert(2, "cancelled", cancelled)
    log.insert(3, "propensity", propensity)
    log["revenue"] = value * (1 - cancelled)
    log["delivered"] = delivered_column(delivered, arms != CONTROL).to_numpy()
    return log


def _check_columns(frame: pd.DataFrame, needed: tuple[str, ...], name: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise SchemaError(f"{name}: missing column(s) {', '.join(missing)}")


def _aligned(frame: pd.DataFrame, order_ids: pd.Series, name: str) -> pd.DataFrame:
    """The rows of ``frame`` for ``order_ids``, in their order; every order exactly once."""
    ids = frame["order_id"]
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        raise SchemaError(
            f"{name}: order_id repeats in {describe_rows(np.flatnonzero(repeated) + 1)}"
        )
    missing = ~order_ids.isin(ids).to_numpy()
    if missing.any():
        raise SchemaError(
            f"{name}: no row for the orders in {describe_rows(np.flatnonzero(missing) + 1)} "
            "of the orders file"
        )
    return frame.set_index("order_id").loc[order_ids.to_numpy()].reset_index()
