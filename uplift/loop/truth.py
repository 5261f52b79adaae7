"""What a simulated week's decisions were truly worth, from the order world's truth.

Only a simulation has the truth (every order's cancellation probability under every arm), so
only the demo and the benchmarks score the loop with it; nothing the loop decides reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data.simulate import ARMS, CONTROL
from uplift.exceptions import SchemaError
from uplift.models.oracle import true_effects
from uplift.policy.ranking import rank_orders

__all__ = ["TRUTH_COLUMNS", "read_truth", "score_week"]

#: What :func:`score_week` returns, in the order the report shows them.
TRUTH_COLUMNS = ("true_value", "true_protected", "oracle_value", "decided_value", "oracle_decided")


def read_truth(folder: Path, week: str) -> pd.DataFrame | None:
    """The truth of ``week``'s orders (``<folder>/<week>.truth.parquet``), or None."""
    path = folder / f"{week}.truth.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def score_week(
    log: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    costs: Mapping[str, float],
    capacity: Mapping[str, float] | None = None,
    measured: Sequence[str] | None = None,
) -> dict[str, float]:
    """The true net value of the week's arms, and of the best allocation with the same capacity.

    ``log`` has ``order_id``, ``arm`` and ``order_value`` (and ``policy_arm``, ``holdout`` for
    ``true_protected``); ``truth`` has ``order_id`` and ``p_cancel_<arm>`` for its orders.
    ``true_value``: the sum over orders of the true revenue uplift of the arm given minus its
    cost (what the decisions were worth against treating nobody). ``true_protected``: the same
    over the orders that got the arm the policy intended (what the readout of the policy
    against its holdout estimates; only the arms in ``measured`` when given, as the readout
    leaves out arms with too few orders). ``oracle_value``: the sum for the allocation that
    knows the true effects, within ``capacity``, with no holdout. ``decided_value`` and
    ``oracle_decided``: the decisions' and the oracle's true net value over the orders the
    policy decided (neither held out nor explored away from its intent), which measures the
    policy apart from what its holdout and exploration give up.
    """
    indexed = truth.set_index(truth["order_id"].astype(str))
    ids = log["order_id"].astype(str)
    missing = ~ids.isin(indexed.index)
    if missing.any():
        raise SchemaError(f"the truth has no row for {int(missing.sum())} order(s) of the log")
    known = indexed.loc[pd.Index(ids)].reset_index(drop=True)
    value = log["order_value"].to_numpy(np.float64)
    arm = log["arm"].astype(str).to_numpy()
    p_cancel = known[[f"p_cancel_{a}" for a in ARMS]].to_numpy(np.float64)
    given = p_cancel[np.arange(len(arm)), pd.Index(ARMS).get_indexer(pd.Index(arm))]
    cost = np.array([float(costs.get(a, 0.0)) for a in arm])
    net = value * (p_cancel[:, ARMS.index(CONTROL)] - given) - cost
    effects = true_effects(known, value)
    # The oracle's queue is in ranked order; its net value per order, in the log's order.
    oracle = rank_orders(effects, costs=costs, capacity=capacity).queue
    oracle_net = oracle.set_index(oracle["order_id"].astype(str))["net_value"].loc[pd.Index(ids)]
    scores = {
        "true_value": float(net.sum()),
        "true_protected": np.nan,
        "oracle_value": float(oracle_net.sum()),
        "decided_value": np.nan,
        "oracle_decided": np.nan,
    }
    if {"policy_arm", "holdout"} <= set(log.columns):
        held = log["holdout"].fillna(False).to_numpy(bool)
        decided = ~held & (arm == log["policy_arm"].astype(str).to_numpy())
        acted = decided & (arm != CONTROL)
        if measured is not None:
            acted &= np.isin(arm, list(measured))
        scores["true_protected"] = float(net[acted].sum())
        scores["decided_value"] = float(net[decided].sum())
        scores["oracle_decided"] = float(oracle_net.to_numpy()[decided].sum())
    return scores
