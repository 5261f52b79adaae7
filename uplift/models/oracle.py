"""The simulator's oracle: what a model that knew the true effects would predict and choose.

Only the simulated order world has a truth; benchmarks and tests score models against it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.simulate import (
    ARM_COSTS,
    CONTROL,
    TREATMENT_ARMS,
    true_retention,
    true_revenue_uplift,
    true_uplift,
)
from uplift.exceptions import ConfigError
from uplift.models.effects import Effects

__all__ = ["oracle_policy", "true_effects"]


def true_effects(truth: pd.DataFrame, order_value: pd.Series | NDArray[np.float64]) -> Effects:
    """The effects a perfect model would predict, keyed by order_id, indexed like ``truth``."""
    return Effects(
        CONTROL,
        TREATMENT_ARMS,
        true_uplift(truth),
        true_revenue_uplift(truth, order_value),
        true_retention(truth),
        truth["order_id"],
    )


def oracle_policy(
    truth: pd.DataFrame,
    order_value: pd.Series | NDArray[np.float64],
    costs: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The best arm per order by true net value (revenue uplift - cost); control when none pays.

    Returns ``order_id``, ``arm`` and ``net_value`` (0 for control), indexed like ``truth``.
    """
    costs = ARM_COSTS if costs is None else costs
    unknown = sorted(set(TREATMENT_ARMS) - set(costs))
    if unknown:
        raise ConfigError(f"costs must name every treatment arm; missing {unknown}")
    effects = true_effects(truth, order_value)
    values = effects.net_value(costs).value
    arm = effects.best_arm(costs)
    column = pd.Index(TREATMENT_ARMS).get_indexer(pd.Index(arm))  # -1: the oracle keeps control
    picked = values[np.arange(len(values)), np.maximum(column, 0)]
    return pd.DataFrame(
        {
            "order_id": truth["order_id"].to_numpy(),
            "arm": arm,
            "net_value": np.where(column >= 0, picked, 0.0),
        },
        index=truth.index,
    )
