"""Held-out orders kept out of training, so that a model is judged on orders it never saw."""

from __future__ import annotations

import numpy as np

from uplift.data.log import ExperimentLog
from uplift.data.normalize import check_week
from uplift.exceptions import ConfigError, SchemaError

__all__ = ["split_log"]


def split_log(
    log: ExperimentLog,
    *,
    test_share: float | None = None,
    test_from: str | None = None,
    seed: int = 0,
) -> tuple[ExperimentLog, ExperimentLog]:
    """The orders to train on and the held-out orders, by exactly one of two rules.

    ``test_share``: that share of the orders, drawn at random with ``seed``. ``test_from``: the
    orders of ISO week ``test_from`` and after (a time split, as the model will be used: trained
    on the past, applied to the weeks that follow). Each side keeps every arm, or the split is
    refused, since neither a model nor its evaluation can do without an arm.
    """
    if (test_share is None) == (test_from is None):
        raise ConfigError("give exactly one of --test-share F and --test-from WEEK")
    if test_share is not None:
        if not 0 < test_share < 1:
            raise ConfigError(f"--test-share must be a share in (0, 1); got {test_share!r}")
        held = np.random.default_rng(seed).random(len(log)) < test_share
        rule = f"--test-share {test_share:g}"
    else:
        week = check_week(str(test_from), "--test-from")
        if not log.has_assigned_at:
            raise SchemaError(
                f"{log.source}: --test-from needs the assigned_at column, to know each order's "
                "week; use --test-share instead"
            )
        held = (log.weeks() >= week).to_numpy()
        rule = f"--test-from {week}"
    train, test = log.subset(~held), log.subset(held)
    for part, name in ((train, "training"), (test, "held-out")):
        missing = sorted(set(log.arms) - set(part.frame["arm"].unique()))
        if missing:
            raise ConfigError(
                f"{log.source}: {rule} leaves no {name} orders for arm(s) {', '.join(missing)}"
                + ("" if len(part) else f" (it leaves no {name} orders at all)")
            )
    return train, test
