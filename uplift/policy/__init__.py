"""The policy: net value per order and arm, exact allocation within capacities and budget,
the ranked queue with holdout, exploration and reasons."""

from uplift.policy.ranking import Assignment, rank_orders
from uplift.policy.value import NetValue, best_arm, net_value

__all__ = ["Assignment", "NetValue", "best_arm", "net_value", "rank_orders"]
