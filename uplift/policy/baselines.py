"""Simple policies to compare a model's with: treat none, treat all with one arm, a rule.

Net value per order and arm, and the model's unconstrained best arm, belong to the model's
:class:`~uplift.models.effects.Effects`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import SchemaError

__all__ = ["pending_payment_rule", "treat_all", "treat_none"]

#: Payment states the rule of thumb acts on.
PENDING_PAYMENT = ("pending", "retry_failed")


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
