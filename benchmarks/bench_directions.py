"""What known directions add: the grid's cells with and without the simulator's own.

The order world's cancellation log-odds rise with the dispatch delay, the order's edits and the
support contacts and fall with the stock confidence and the prior orders
(``uplift.data.simulate._causes`` and ``_base_logit``), in every world of the grid. A team that
knows as much states it as directions (``train --direction``); this benchmark fits, on every
cell and seed of the model grid (same logs, same seeds, same 100,000 fresh test orders as
``bench_models.py --part grid``), the default (``auto``, which chooses among ``s_blend``,
``s_lgbm`` and ``s_linear``) and the bagged S-learner alone, each without and with those
directions, and gives the true share of the oracle's net value of each, and the difference
with them minus without, seed by seed.

    .venv/bin/python benchmarks/bench_directions.py [--grid-seeds 5] [--grid-cells ...]

Writes ``benchmarks/results/directions.md`` and ``directions.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
from bench_models import (
    DEFAULT_GRID_CELLS,
    OrderTask,
    grid_parser,
    markdown,
    over_grid,
    results_head,
    write_grid_results,
)

from uplift.data.simulate import ARM_COSTS
from uplift.models.training import train_uplift

#: The simulator's directions on the chance an order is kept (see above).
KNOWN = {
    "dispatch_delay_days": "down",
    "order_edits": "down",
    "support_contacts": "down",
    "stock_confidence": "up",
    "prior_orders": "up",
}
LEARNERS = ("auto", "s_lgbm")


def cell(world: str, orders: int, seed: int, test_orders: int) -> dict[str, Any]:
    """Each learner's share without and with the directions on one cell and seed."""
    task = OrderTask.of_grid(world, orders, seed, test_orders)
    row: dict[str, Any] = {"world": world, "orders": orders, "seed": seed}
    for learner in LEARNERS:
        for label, directions in (("without", None), ("with", KNOWN)):
            model = train_uplift(
                task.train, learner=learner, costs=ARM_COSTS, seed=seed, directions=directions
            )
            uplift = model.predict_effects(task.X_test).uplift("retained")
            row[f"{learner} {label}"] = task.share(uplift)
            if learner == "auto":
                row[f"auto {label} chose"] = model.learner
    return row


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean share without and with, the mean difference and its range over seeds."""
    rows = []
    for (world, orders), group in frame.groupby(["world", "orders"], sort=False):
        row: dict[str, Any] = {"world": world, "orders": orders}
        for learner in LEARNERS:
            gain = group[f"{learner} with"] - group[f"{learner} without"]
            row[f"{learner} without"] = group[f"{learner} without"].mean()
            row[f"{learner} with"] = group[f"{learner} with"].mean()
            row[f"{learner} gain"] = (
                f"{gain.mean():+.2f} ({gain.min():+.2f} to {gain.max():+.2f}; "
                f"{int((gain > 0).sum())} of {len(gain)} up)"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    args = grid_parser(__doc__.splitlines()[0], DEFAULT_GRID_CELLS).parse_args(argv)
    started = time.time()
    frame = over_grid(args, cell)
    gains = {
        learner: frame[f"{learner} with"] - frame[f"{learner} without"] for learner in LEARNERS
    }
    overall = pd.DataFrame(
        {
            "learner": list(LEARNERS),
            "grid mean without": [frame[f"{x} without"].mean() for x in LEARNERS],
            "grid mean with": [frame[f"{x} with"].mean() for x in LEARNERS],
            "mean gain": [gains[x].mean() for x in LEARNERS],
            "its standard error": [gains[x].std() / len(gains[x]) ** 0.5 for x in LEARNERS],
            "runs up": [f"{int((gains[x] > 0).sum())} of {len(gains[x])}" for x in LEARNERS],
        }
    )
    chose = frame[["auto without chose", "auto with chose"]].stack().value_counts()
    text = "\n\n".join(
        [
            *results_head(
                "Known directions: the grid without and with the simulator's own", started
            ),
            "\n\n".join(__doc__.split("\n\n")[1:2]),
            "Directions: " + ", ".join(f"`{c}` {w}" for c, w in KNOWN.items()) + ".",
            "Per cell, mean true share (%) of the oracle's net value over seeds, and the gain "
            "(with minus without, points) by seed: mean (range; seeds with a gain):",
            markdown(summary(frame), digits=3),
            "Over every cell and seed:",
            markdown(overall, digits=3),
            "`auto` chose: " + ", ".join(f"{name} {count}" for name, count in chose.items()) + ".",
        ]
    )
    write_grid_results(args, "directions", text, frame)


if __name__ == "__main__":
    main()
