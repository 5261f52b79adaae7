"""`python -m uplift.loop.demo`: several weeks of the order world through the weekly loop.

Week by week, the demo drops the week's simulated log into ``<out>/inbox/`` and the next
week's orders (without outcomes) into ``<out>/pending/``, then runs the weekly job: ingest,
readout, challenger against champion, check of last week's predictions, queue, report. It
prints the path of the newest report. Everything lands in ``<out>/`` (store, models, reports);
a second run finds the weeks done and only prints the path again.

Every week of the simulated world is randomised with a control holdout; the queue is ranked
and stored but does not steer the next week's arms, so each week's readout stays unbiased.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from uplift.data.files import table_output, write_outputs, write_table
from uplift.data.simulate import ARM_COSTS, CONTROL, pending_orders, simulate
from uplift.loop.store import Store
from uplift.loop.weekly import WeeklyConfig, WeeklyJob

__all__ = ["main", "run_demo", "truth_path", "week_labels"]

START_WEEK = "2026-W40"
#: Per-week limits of the costly arms (couriers and agents), so that shadow prices show.
CAPACITY = {"expedite": 1500.0, "agent_call": 600.0}
#: Segments the readout breaks down by (the rest of the features are read out in the model).
SEGMENTS = ("payment_status", "customer_tenure", "category")


def week_labels(start: str, weeks: int) -> list[str]:
    """``weeks`` consecutive ISO week labels from ``start``."""
    year, week = (int(part) for part in start.split("-W"))
    monday = date.fromisocalendar(year, week, 1)
    labels = []
    for k in range(weeks):
        iso = (monday + timedelta(weeks=k)).isocalendar()
        labels.append(f"{iso.year}-W{iso.week:02d}")
    return labels


def simulate_week(
    folder: Path, label: str, index: int, orders: int, seed: int, effect_drift: float
) -> Path:
    """Write the simulated log of one week and its truth beside it (once); the log's path.

    The truth (``<label>.truth.parquet``: every order's cancellation probability under every
    arm) lets anyone score what the loop did; nothing in the loop reads it.
    """
    path = folder / "weeks" / f"{label}.parquet"
    if not path.exists():
        world = simulate(
            orders,
            weeks=1,
            seed=seed + index,
            start_week=label,
            first_order_id=1 + index * orders,
            effect_drift=effect_drift,
        )
        write_outputs(table_output(world.log, path), table_output(world.truth, truth_path(path)))
    return path


def truth_path(log: Path) -> Path:
    """Where a week's truth is kept: ``<week>.truth.parquet`` beside ``<week>.parquet``."""
    return log.with_name(f"{log.stem}.truth{log.suffix}")


def stage_week(folder: Path, weeks: Sequence[Path], index: int) -> Path:
    """Put week ``index``'s log into the inbox and the next week's orders into pending."""
    inbox = folder / "inbox" / weeks[index].name
    if not inbox.exists():
        write_table(pd.read_parquet(weeks[index]), inbox)
    pending = folder / "pending" / weeks[index].name
    if not pending.exists():
        write_table(pending_orders(pd.read_parquet(weeks[index + 1])), pending)
    return pending


def run_demo(
    folder: Path,
    *,
    weeks: int = 6,
    orders: int = 30_000,
    seed: int = 0,
    effect_drift: float = 0.0,
    say: Callable[[str], None] = print,
) -> Path:
    """Run the loop over ``weeks`` simulated weeks in ``folder``; return the newest report.

    ``effect_drift`` is the share of every arm's effect the last week loses.
    """
    labels = week_labels(START_WEEK, weeks + 1)
    store = Store(folder / "uplift.duckdb")
    done = set(store.reports()["week"])
    logs = [
        simulate_week(folder, label, k, orders, seed, effect_drift if k == weeks - 1 else 0.0)
        for k, label in enumerate(labels)
    ]
    for k, label in enumerate(labels[:-1]):
        if label in done:
            say(f"{label}: report already written")
            continue
        started = time.monotonic()
        config = WeeklyConfig(
            store=store.path,
            out=folder / "reports",
            inbox=folder / "inbox",
            pending=stage_week(folder, logs, k),
            costs={arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL},
            capacity=CAPACITY,
            seed=seed,
            segments=SEGMENTS,
        )
        result = WeeklyJob(config).run(label)
        flag = ""
        if result.report.learn is not None:
            flag = ", predictions DISAGREE" if result.report.learn.flagged else ", predictions hold"
        say(
            f"{label}: champion {result.champion_id}"
            f"{' (new)' if result.promoted else ''}{flag} [{time.monotonic() - started:.0f} s]"
        )
    return folder / "reports" / labels[-2] / "index.html"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the demo."""
    parser = argparse.ArgumentParser(prog="python -m uplift.loop.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    parser.add_argument("--weeks", type=int, default=6, help="weeks to simulate")
    parser.add_argument("--orders", type=int, default=30_000, help="orders per week")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--effect-drift", type=float, default=0.0, help="share of the effects the last week loses"
    )
    args = parser.parse_args(argv)
    report = run_demo(
        args.out,
        weeks=args.weeks,
        orders=args.orders,
        seed=args.seed,
        effect_drift=args.effect_drift,
    )
    print(f"latest report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
