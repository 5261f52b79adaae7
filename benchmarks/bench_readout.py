"""How long reading out a 10,000,000-row experiment log takes, and what adjustment buys.

Run from the repository root: ``.venv/bin/python benchmarks/bench_readout.py [--orders N]``.
Prints markdown tables: the machine, wall-clock seconds per step (building the validated log,
the readout, a readout with a segment breakdown, and the whole ``uplift readout`` command on a
Parquet file), and the interval-width reduction of regression adjustment on the order world.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARMS, simulate
from uplift.experiment.readout import readout

UPLIFT = Path(sys.executable).with_name("uplift")
CATEGORIES = np.array(["electronics", "fashion", "home", "beauty", "grocery", "sports"])


def synthetic_log(orders: int, seed: int = 0) -> pd.DataFrame:
    """A randomised six-arm log (20% control) drawn in a few vectorised passes."""
    rng = np.random.default_rng(seed)
    shares = np.array([0.2] + [0.16] * 5)
    arm = rng.choice(len(ARMS), size=orders, p=shares)
    value = rng.lognormal(4.2, 0.8, orders).round(2)
    cancelled = (rng.random(orders) < 0.075 - 0.002 * (arm > 0)).astype(np.int8)
    return pd.DataFrame(
        {
            "order_id": np.arange(orders, dtype=np.int64),
            "arm": np.array(ARMS, dtype=object)[arm],
            "cancelled": cancelled,
            "order_value": value,
            "propensity": shares[arm],
            "category": CATEGORIES[rng.integers(0, len(CATEGORIES), orders)],
        }
    )


def _timed(label: str, action: object, rows: list[tuple[str, float]]) -> object:
    start = time.perf_counter()
    result = action()  # type: ignore[operator]
    rows.append((label, time.perf_counter() - start))
    return result


def speed(orders: int) -> list[tuple[str, float]]:
    """Seconds per step of a readout of ``orders`` rows."""
    rows: list[tuple[str, float]] = []
    frame = synthetic_log(orders)
    log = _timed(
        "validate log (ExperimentLog.from_frame)", lambda: ExperimentLog.from_frame(frame), rows
    )
    _timed("readout(log)", lambda: readout(log), rows)  # type: ignore[arg-type]
    _timed("readout(log, segment='category')", lambda: readout(log, segment="category"), rows)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.parquet"
        frame.to_parquet(path, index=False)
        command = [str(UPLIFT), "readout", str(path), "--json", str(Path(folder) / "r.json")]
        _timed(
            "uplift readout LOG.parquet --json (whole command)",
            lambda: subprocess.run(command, check=True, capture_output=True),
            rows,
        )
    return rows


def adjustment(orders: int) -> pd.DataFrame:
    """Standard errors with and without regression adjustment on a simulated order world."""
    log = ExperimentLog.from_frame(simulate(orders, weeks=4, seed=31).log)
    table = readout(log, adjust=True).adjustment
    assert table is not None
    return table[table["metric"] != "cancel_rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--adjust-orders", type=int, default=200_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"\n## Readout of {args.orders:,} orders (6 arms)\n")
    print("| step | seconds |\n|---|---|")
    for label, seconds in speed(args.orders):
        print(f"| {label} | {seconds:.2f} |")
    print(f"\n## Regression adjustment on the order world ({args.adjust_orders:,} orders)\n")
    table = adjustment(args.adjust_orders)
    print("| arm | metric | variance reduction | interval width ratio |\n|---|---|---|---|")
    for row in table.itertuples(index=False):
        print(
            f"| {row.arm} | {row.metric} | {row.variance_reduction:.1%} | "
            f"{row.interval_width_ratio:.3f} |"
        )


if __name__ == "__main__":
    main()
