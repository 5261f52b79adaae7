"""The policy: exact allocation within capacities and budget, the ranked queue with holdout,
exploration and reasons, and simple policies to compare with."""

from uplift.models.effects import NetValue
from uplift.policy.ranking import Assignment, rank_orders

__all__ = ["Assignment", "NetValue", "rank_orders"]
