"""The learning curve of the training sample size: how many orders a training sample needs.

In the default (realistic) simulated order world, a model is trained on N orders for each N of
``--sizes`` and each of ``--seeds`` seeds, and its policy (argmax of predicted uplift x
order_value - arm cost, none if negative) is scored with the TRUE uplift on one fixed set of
fresh test orders, as a share of the oracle's net value. Per size: the mean share over seeds,
its min, max and sd, the gain over the previous size, the fit seconds; and the "knee", the
smallest size whose mean is at most 1 point below the largest size's.

Each seed simulates one log of the largest size; every size is a random subset of it, drawn
as the first N of one random permutation, so within a seed the sizes are nested (the 20,000
orders contain the 20,000) and the differences between sizes are less noisy than with a fresh
log per size. The log is sorted by time, so its first N rows would be the first days only: a
subset is drawn, never a head.

Writes ``benchmarks/results/learning-curve.md`` (the table) and ``learning-curve.csv`` (every
cell). Run from the repository root:

    .venv/bin/python benchmarks/bench_learning_curve.py [--sizes 20000,50000,...] [--seeds 4]
        [--test-orders 100000] [--learner auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_models import RESULTS, OrderTask, machine, markdown, order_row

from uplift.data.files import atomic_path
from uplift.data.simulate import ARM_COSTS, simulate
from uplift.models.catalog import AUTO, LEARNERS
from uplift.models.training import train_uplift

SIZES = (20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000)
SHARE = "net value % of oracle"
KNEE_POINTS = 1.0
# The grid's convention (bench_models): training seeds 100 + s; the test orders are simulated
# in the four weeks after the training log's, with a seed no training log uses.
TRAIN_SEED = 100
TEST_SEED = 200
TEST_WEEK = "2026-W44"


def sizes(text: str) -> list[int]:
    """``--sizes``: comma-separated order counts, returned ascending."""
    try:
        values = sorted({int(v.replace("_", "")) for v in text.split(",")})
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a comma-separated list of integers") from None
    if values[0] < 1:
        raise SystemExit("--sizes: every size must be positive")
    return values


def seed_cells(
    task: OrderTask, seed: int, order_sizes: list[int], learner: str
) -> list[dict[str, Any]]:
    """One seed: a model per size on nested random subsets of the seed's training log."""
    permutation = np.random.default_rng(seed).permutation(len(task.train))
    cells = []
    for n in order_sizes:
        print(f"seed {seed}, {n:,} orders ...", file=sys.stderr, flush=True)
        rows = np.zeros(len(task.train), dtype=bool)
        rows[permutation[:n]] = True
        start = time.perf_counter()
        model = train_uplift(task.train.subset(rows), learner=learner, costs=ARM_COSTS, seed=seed)
        seconds = time.perf_counter() - start
        uplift = model.predict_effects(task.X_test).uplift("retained")
        row = order_row(uplift, task.true, task.value, task.oracle)
        cells.append({"orders": n, "seed": seed, **row, "fit s": seconds, "learner": model.learner})
    return cells


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per size: the share's mean and spread over seeds, the gain, the fit seconds."""
    grouped = cells.groupby("orders")
    table = grouped[SHARE].agg(["count", "mean", "min", "max", "std"])
    table.columns = ["seeds", "mean % of oracle", "min", "max", "sd"]
    table["gain over previous size (points)"] = table["mean % of oracle"].diff()
    # Sizes are nested within a seed and share the test orders: the per-seed gap to the
    # largest size is paired, so its range says more about the knee than min and max do.
    largest = cells[cells["orders"] == cells["orders"].max()].set_index("seed")[SHARE]
    gap = cells["seed"].map(largest) - cells[SHARE]
    gaps = gap.groupby(cells["orders"])
    table["below largest, per seed (points)"] = [
        f"{low:.1f} to {high:.1f}" for low, high in zip(gaps.min(), gaps.max(), strict=True)
    ]
    table["fit s (mean)"] = grouped["fit s"].mean()
    table["learner"] = grouped["learner"].agg(lambda names: ", ".join(sorted(set(names))))
    return table.reset_index()


def knee(table: pd.DataFrame) -> str:
    """The smallest size whose mean share is at most KNEE_POINTS below the largest size's."""
    means = table.set_index("orders")["mean % of oracle"]
    largest = means.index.max()
    close = means[means >= means[largest] - KNEE_POINTS]
    n = int(close.index.min())
    line = (
        f"Knee: {n:,} orders, the smallest size whose mean share ({means[n]:.1f}%) is at most "
        f"{KNEE_POINTS:g} point below that of the largest size, {largest:,} orders "
        f"({means[largest]:.1f}%)."
    )
    if n == largest and len(means) > 1:
        line += (
            " No smaller size comes that close: the curve is still rising at the largest size "
            "measured, so the knee lies at or beyond it."
        )
    return line


def write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=list(SIZES), help="training orders")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--test-orders", type=int, default=100_000)
    parser.add_argument("--learner", choices=(AUTO, *LEARNERS), default=AUTO)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the results")
    args = parser.parse_args()
    started = time.monotonic()
    header = machine()  # its load average is the one at the start
    date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = " ".join([".venv/bin/python benchmarks/bench_learning_curve.py", *sys.argv[1:]])

    test = simulate(args.test_orders, seed=TEST_SEED, start_week=TEST_WEEK)
    cells: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        task = OrderTask.of(simulate(max(args.sizes), seed=TRAIN_SEED + seed), test)
        cells += seed_cells(task, seed, args.sizes, args.learner)
        # Every cell is kept as it comes, so a long run is never lost to the summary.
        write(args.results / "learning-curve.csv", pd.DataFrame(cells).to_csv(index=False))

    table = summary(pd.DataFrame(cells))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n\n".join(
        [
            "# Learning curve of the training sample size (realistic world)",
            f"Command: `{command}` (generated file; {date}; "
            f"{time.monotonic() - started:.0f} s wall clock).",
            f"{header} Load average at the end {load}.",
            f"Training: per seed s = 0..{args.seeds - 1}, one log `simulate({max(args.sizes):,}, "
            f"seed={TRAIN_SEED} + s)` (randomised, 20% control); each size is a random subset "
            "of it, the first N of one permutation drawn with seed s, so sizes are nested "
            f"within a seed. Model: `train_uplift(log, learner={args.learner!r}, "
            "costs=ARM_COSTS, seed=s)`; `fit s` is that whole call (with `auto`: choosing the "
            "learner on cross-fitted folds, the final fit and the risk model). Test: the same "
            f"{args.test_orders:,} fresh orders `simulate(test_orders, seed={TEST_SEED}, "
            f"start_week={TEST_WEEK!r})` for every cell. Figure: the true net value of the "
            "model's policy (argmax of predicted retained uplift x order_value - arm cost, "
            "none if negative) as a % of the oracle's on the test orders. `below largest`: "
            "the largest size's share minus this size's, per seed (paired: same log, same "
            "test orders). Every cell is in `learning-curve.csv`.",
            markdown(table),
            knee(table),
        ]
    )
    print(text, flush=True)
    write(args.results / "learning-curve.md", text + "\n")


if __name__ == "__main__":
    main()
