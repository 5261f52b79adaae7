"""`python -m uplift.loop.demo`: the closed loop, week after week, in the order world.

The first weeks are randomised with a control holdout (a cold start: there is no model yet).
From then on the loop is closed: each week's job ranks the next week's pending orders into a
queue (the policy, with a random holdout and a small exploration share, capacities binding),
and the simulator draws what those orders do under the queue's arms, from the same truth they
were drawn with. So each report reads out the policy's own decisions against its holdout,
checks what the model predicted for exactly those orders, and shows the loop over time.

Files under ``<out>/``: ``weeks/<week>.parquet`` (the week's log as it happened) with
``weeks/<week>.truth.parquet`` beside it (every order's true probabilities: the report's
truth panel scores the loop with them; nothing the loop decides reads them), ``inbox/`` and
``pending/`` (what the weekly job is given), the store, models and reports. A second run finds
the weeks done and only prints the path of the newest report again.
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
from uplift.data.outcomes import simulate_outcomes
from uplift.data.simulate import (
    ARM_COSTS,
    ARMS,
    CONTROL,
    WORLDS,
    SimulatedWorld,
    pending_orders,
    simulate,
)
from uplift.exceptions import ConfigError
from uplift.loop.store import Store
from uplift.loop.weekly import DEFAULT_LEARNER, WeeklyConfig, WeeklyJob, WeeklyResult

__all__ = ["main", "reverse_arm", "run_demo", "truth_path", "week_labels"]

START_WEEK = "2026-W40"
#: Per-week limits of the costly arms (couriers and agents), so that shadow prices show.
CAPACITY = {"expedite": 1500.0, "agent_call": 600.0}
#: Segments the readout breaks down by (the rest of the features are read out in the model).
SEGMENTS = ("payment_status", "customer_tenure", "category")
#: The queue's random holdout and exploration shares once the loop is closed.
HOLDOUT = 0.1
EXPLORE = 0.05
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}


def week_labels(start: str, weeks: int) -> list[str]:
    """``weeks`` consecutive ISO week labels from ``start``."""
    year, week = (int(part) for part in start.split("-W"))
    monday = date.fromisocalendar(year, week, 1)
    labels = []
    for k in range(weeks):
        iso = (monday + timedelta(weeks=k)).isocalendar()
        labels.append(f"{iso.year}-W{iso.week:02d}")
    return labels


def truth_path(log: Path) -> Path:
    """Where a week's truth is kept: ``<week>.truth.parquet`` beside ``<week>.parquet``."""
    return log.with_name(f"{log.stem}.truth{log.suffix}")


def reverse_arm(truth: pd.DataFrame, arm: str) -> pd.DataFrame:
    """The truth with ``arm``'s effect reversed: it now raises cancellation by as much as it
    lowered it (probabilities kept within [0, 1])."""
    if arm not in ARMS or arm == CONTROL:
        raise ConfigError(f"can only reverse a treatment arm of the order world; got {arm!r}")
    control = truth[f"p_cancel_{CONTROL}"]
    reversed_p = (2 * control - truth[f"p_cancel_{arm}"]).clip(0.0, 1.0)
    return truth.assign(**{f"p_cancel_{arm}": reversed_p})


class _Loop:
    """The simulated shop of one demo run: its worlds, its files and the weekly job."""

    def __init__(
        self,
        folder: Path,
        labels: Sequence[str],
        *,
        orders: int,
        seed: int,
        world: str,
        cold_start: int,
        effect_drift: float,
        reverse: tuple[str, int] | None,
        learner: str,
        window: int,
        explore: float,
    ) -> None:
        self.folder, self.labels, self.orders, self.seed = folder, labels, orders, seed
        self.world, self.cold_start, self.reverse = world, cold_start, reverse
        self.effect_drift, self.learner = effect_drift, learner
        self.window, self.explore = window, explore
        self.store = Store(folder / "uplift.duckdb")

    def simulated(self, k: int) -> SimulatedWorld:
        """Week ``k`` of the world: the orders, randomised arms and the truth."""
        last = k == len(self.labels) - 2
        world = simulate(
            self.orders,
            weeks=1,
            seed=self.seed + k,
            world=self.world,
            start_week=self.labels[k],
            first_order_id=1 + k * self.orders,
            effect_drift=self.effect_drift if last else 0.0,
        )
        if self.reverse is not None and self.reverse[1] == k:
            world = SimulatedWorld(world.log, reverse_arm(world.truth, self.reverse[0]), False)
        return world

    def log(self, k: int) -> Path:
        """Write week ``k``'s log (randomised in the cold start, else under the queue the
        previous week's job stored) and its truth, once; the log's path."""
        path = self.folder / "weeks" / f"{self.labels[k]}.parquet"
        if path.exists():
            return path
        world = self.simulated(k)
        log = world.log
        if k >= self.cold_start:
            queue = self.store.assignment(self.labels[k - 1])
            if queue.empty:
                raise ConfigError(f"{self.store.path}: no queue stored for {self.labels[k - 1]}")
            pending = pending_orders(world.log)
            queue = queue.assign(order_id=queue["order_id"].astype(pending["order_id"].dtype))
            log = simulate_outcomes(
                pending, world.truth, queue, seed=self.seed + 10_000 + k, source="queue"
            )
            log = log[list(world.log.columns)]
        write_outputs(table_output(log, path), table_output(world.truth, truth_path(path)))
        return path

    def stage(self, k: int) -> Path | None:
        """Put week ``k``'s log into the inbox and, when the loop is closed by then, the next
        week's orders into pending (a cold-start week is randomised: nothing to rank)."""
        inbox = self.folder / "inbox" / f"{self.labels[k]}.parquet"
        if not inbox.exists():
            write_table(pd.read_parquet(self.log(k)), inbox)
        if k + 1 < self.cold_start:
            return None
        pending = self.folder / "pending" / f"{self.labels[k + 1]}.parquet"
        if not pending.exists():
            write_table(pending_orders(self.simulated(k + 1).log), pending)
        return pending

    def config(self, k: int) -> WeeklyConfig:
        """The weekly job of week ``k``: the queue it ranks decides week ``k + 1``."""
        return WeeklyConfig(
            store=self.store.path,
            out=self.folder / "reports",
            inbox=self.folder / "inbox",
            pending=self.stage(k),
            costs=COSTS,
            capacity=CAPACITY,
            holdout=HOLDOUT,
            explore=self.explore,
            learner=self.learner,
            window=self.window,
            seed=self.seed,
            segments=SEGMENTS,
            truth_dir=self.folder / "weeks",
        )


def run_demo(
    folder: Path,
    *,
    weeks: int = 8,
    orders: int = 30_000,
    seed: int = 0,
    world: str = "realistic",
    cold_start: int = 2,
    effect_drift: float = 0.0,
    reverse: tuple[str, int] | None = None,
    learner: str = DEFAULT_LEARNER,
    window: int = 4,
    explore: float = EXPLORE,
    say: Callable[[str], None] = print,
) -> Path:
    """Run the loop over ``weeks`` simulated weeks in ``folder``; return the newest report.

    The first ``cold_start`` weeks are randomised; later weeks get the arms of the queue the
    previous week's job ranked. ``effect_drift`` is the share of every arm's effect the last
    week loses; ``reverse = (arm, k)`` reverses ``arm``'s effect in week ``k`` (from 0).
    ``window`` is the weekly job's training window in weeks, ``explore`` the queue's
    exploration share.
    """
    if not 1 <= cold_start <= weeks:
        raise ConfigError(f"cold_start must be between 1 and weeks ({weeks}); got {cold_start}")
    if world not in WORLDS:
        raise ConfigError(f"world must be one of {', '.join(WORLDS)}; got {world!r}")
    labels = week_labels(START_WEEK, weeks + 1)
    loop = _Loop(
        folder,
        labels,
        orders=orders,
        seed=seed,
        world=world,
        cold_start=cold_start,
        effect_drift=effect_drift,
        reverse=reverse,
        learner=learner,
        window=window,
        explore=explore,
    )
    done = set(loop.store.reports()["week"])
    for k, label in enumerate(labels[:-1]):
        if label in done:
            say(f"{label}: report already written")
            continue
        started = time.monotonic()
        result = WeeklyJob(loop.config(k)).run(label)
        say(f"{label}: {_summary(result)} [{time.monotonic() - started:.0f} s]")
    return folder / "reports" / labels[-2] / "index.html"


def _summary(result: WeeklyResult) -> str:
    """One line on what the week's job found."""
    report = result.report
    words = [f"champion {result.champion_id}" + (" (new)" if result.promoted else "")]
    if not report.policy.empty:
        total = report.policy.iloc[-1]
        words.append(
            f"policy protected {total['protected']:,.0f} "
            f"({total['protected_ci_lower']:,.0f} to {total['protected_ci_upper']:,.0f})"
        )
    if report.learn is not None:
        words.append("predictions DISAGREE" if report.learn.flagged else "predictions hold")
    return ", ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the demo."""
    parser = argparse.ArgumentParser(prog="python -m uplift.loop.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    parser.add_argument("--weeks", type=int, default=8, help="weeks to simulate")
    parser.add_argument("--orders", type=int, default=30_000, help="orders per week")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--world", choices=list(WORLDS), default="realistic", help="how hard the world is"
    )
    parser.add_argument(
        "--cold-start", type=int, default=2, help="randomised weeks before the policy decides"
    )
    parser.add_argument(
        "--effect-drift", type=float, default=0.0, help="share of the effects the last week loses"
    )
    args = parser.parse_args(argv)
    report = run_demo(
        args.out,
        weeks=args.weeks,
        orders=args.orders,
        seed=args.seed,
        world=args.world,
        cold_start=args.cold_start,
        effect_drift=args.effect_drift,
    )
    print(f"latest report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
