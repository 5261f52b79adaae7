"""The policy's decisions in the weekly job: compliance, exploration, and the loop over time.

A week whose arms a stored queue decided carries, per order, the arm the policy intended and
whether the order was held out. From them: which orders complied with the queue, which were
explored, what exploration cost and how much it narrows the champion-challenger interval, and
the loop's weekly points with their running totals.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.experiment.metrics import Z95
from uplift.experiment.offpolicy import PolicyComparison
from uplift.loop.store import Store
from uplift.models.effects import Effects

__all__ = [
    "complied_orders",
    "exploration_words",
    "explore_cost",
    "explored_orders",
    "loop_table",
    "week_seed",
]


def explored_orders(log: ExperimentLog, decisions: pd.DataFrame) -> np.ndarray:
    """The orders the policy explored: decided, not held out, given another arm than intended."""
    intended = decisions["policy_arm"].astype(object).to_numpy()
    held = decisions["holdout"].fillna(False).to_numpy(bool)
    return np.asarray(pd.notna(intended) & ~held & (log.frame["arm"].to_numpy() != intended))


def exploration_words(comparison: PolicyComparison, explored: np.ndarray) -> str:
    """How much of the contest's interval the explored orders make, and what more would buy.

    An explored order's weight is about 1 / its arm's exploration probability, so the explored
    orders' part of the variance scales as 1 / the exploration share (twice the share: twice
    the orders at half the weight): doubling it halves that part.
    """
    if not explored.any():
        return ""
    part = comparison.variance_share("challenger", "champion", explored)
    narrower = 1 - math.sqrt(1 - part / 2)
    return (
        f" {int(explored.sum()):,} explored orders carry {part:.0%} of this interval's variance;"
        f" twice the exploration share would narrow it by about {narrower:.0%}."
    )


def explore_cost(
    log: ExperimentLog,
    decisions: pd.DataFrame | None,
    predicted: Effects | None,
    costs: Mapping[str, float],
) -> float:
    """Predicted net value given up by the explored orders: the intended arm's minus the
    given arm's, summed (the model's view; nothing measures it directly)."""
    if decisions is None or predicted is None or predicted.revenue is None:
        return math.nan
    arm = log.frame["arm"].astype(str).to_numpy()
    intended = decisions["policy_arm"].astype(object).to_numpy()
    rows = np.flatnonzero(explored_orders(log, decisions))
    revenue = predicted.uplift("revenue")
    net = pd.DataFrame(
        {a: revenue[a].to_numpy(np.float64) - costs.get(a, 0.0) for a in revenue.columns}
    )
    net[log.control] = 0.0
    columns = pd.Index(net.columns)
    values = net.to_numpy()
    given = values[rows, columns.get_indexer(pd.Index(arm[rows]))]
    wanted = values[rows, columns.get_indexer(pd.Index(intended[rows].astype(str)))]
    return float((wanted - given).sum())


def week_seed(seed: int, week: str) -> int:
    """The seed of a week's random holdout and exploration: fresh draws every week, so that
    the same positions of the pending file are not held out week after week."""
    return int(hashlib.sha256(f"{seed}:{week}".encode()).hexdigest()[:12], 16)


def loop_table(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Weekly points of the loop with intervals, and their running totals."""
    table = pd.DataFrame(rows)
    for column in ("protected", "se", "predicted", "holdout_cost", "explore_cost"):
        if column not in table:
            table[column] = np.nan
    table = table.astype({c: float for c in table.columns if c != "week"})
    table["ci_lower"] = table["protected"] - Z95 * table["se"]
    table["ci_upper"] = table["protected"] + Z95 * table["se"]
    # Weeks are disjoint orders: their estimates are independent, so variances add.
    table["cumulative"] = table["protected"].fillna(0.0).cumsum()
    cumulative_se = np.sqrt((table["se"].fillna(0.0) ** 2).cumsum())
    table["cumulative_ci_lower"] = table["cumulative"] - Z95 * cumulative_se
    table["cumulative_ci_upper"] = table["cumulative"] + Z95 * cumulative_se
    first = ["week", "protected", "ci_lower", "ci_upper", "predicted", "cumulative"]
    rest = [c for c in table.columns if c not in first and c != "se"]
    return table[first + rest]


def complied_orders(
    store: Store, weeks: Sequence[str], week: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored orders of ``weeks`` with the policy's decisions, and the week's compliance.

    Orders whose logged arm is not the arm the queue decided are non-compliance: they are
    counted per decided arm for ``week`` and left out (their arm was not chosen by the policy
    with a known probability, so they belong to neither the policy nor its holdout).
    """
    frame = store.log_frame(weeks)
    decided = store.decisions(weeks).set_index("order_id")
    ids = frame["order_id"].astype(str)
    decided_arm = ids.map(decided["decided_arm"])
    frame["policy_arm"] = ids.map(decided["policy_arm"])
    frame["holdout"] = ids.map(decided["holdout"])
    other = decided_arm.notna() & (decided_arm != frame["arm"])
    in_week = (frame["week"] == week) & decided_arm.notna()
    compliance = (
        pd.DataFrame({"decided_arm": decided_arm[in_week], "other": other[in_week]})
        .groupby("decided_arm")
        .agg(decided=("other", "size"), logged_other_arm=("other", "sum"))
        .reset_index()
        .rename(columns={"decided_arm": "arm"})
    )
    return frame[~other].reset_index(drop=True), compliance
