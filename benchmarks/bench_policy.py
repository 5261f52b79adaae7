"""Speed and exactness of `uplift.policy.ranking.rank_orders` on the order world.

1,000,000 simulated orders x 6 arms (control + 5 actions) with two binding capacities. The
effects are the simulator's truth (ranking starts after prediction). Ranking runs in a fresh
process that reads the effects file, so its peak RSS is the ranking's, not the simulator's.
Exactness: at full size the dual bound certifies the optimum (objective = bound); on random
subsamples the objective is compared with scipy's HiGHS linear program.

    .venv/bin/python benchmarks/bench_policy.py [--orders 1000000]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack

from uplift.data.simulate import ARM_COSTS, simulate
from uplift.models.effects import Effects
from uplift.models.oracle import true_effects
from uplift.policy.allocation import allocate
from uplift.policy.ranking import rank_orders

CAPACITY = {"agent_call": 4_000, "expedite": 3_000}
HIGHS_ORDERS = 2_000


def effects_file(orders: int, folder: Path) -> Path:
    world = simulate(orders, weeks=1, seed=2026)
    effects = true_effects(world.truth, world.log["order_value"])
    path = folder / "effects.parquet"
    effects.to_frame().to_parquet(path, index=False)
    return path


def rank_in_process(path: Path) -> dict[str, float]:
    """Read the effects, rank, and report time and peak memory (run in a child process)."""
    effects = pd.read_parquet(path)
    costs = {a: c for a, c in ARM_COSTS.items() if a != "control"}
    start = time.perf_counter()
    result = rank_orders(effects, costs=costs, capacity=CAPACITY, holdout=0.05, explore=0.02)
    seconds = time.perf_counter() - start
    prices = result.summary.set_index("arm")["shadow_price"]
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "objective": result.objective,
        "upper_bound": result.upper_bound,
        **{f"price_{a}": float(prices[a]) for a in CAPACITY},
    }


def highs_agreement(path: Path, samples: int = 5) -> float:
    """Largest relative gap between our objective and HiGHS's LP optimum on subsamples."""
    costs = {a: c for a, c in ARM_COSTS.items() if a != "control"}
    effects = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(samples):
        rows = rng.choice(len(effects), HIGHS_ORDERS, replace=False)
        values = Effects.from_frame(effects.iloc[rows]).net_value(costs)
        cap = np.array([CAPACITY.get(a, math.inf) / 500 for a in values.arms])  # same tightness
        value = values.value
        n, k = value.shape
        one = coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), np.arange(n * k))))
        limited = np.flatnonzero(np.isfinite(cap))
        per_arm = coo_matrix(
            (
                np.ones(n * limited.size),
                (
                    np.tile(np.arange(limited.size), n),
                    (np.arange(n)[:, None] * k + limited).ravel(),
                ),
            ),
            shape=(limited.size, n * k),
        )
        lp = linprog(
            -value.ravel(),
            A_ub=vstack([one, per_arm]),
            b_ub=np.r_[np.ones(n), cap[limited]],
            bounds=(0, None),
            method="highs",
        )
        ours = allocate(value, values.cost, cap).objective
        worst = max(worst, abs(ours + lp.fun) / abs(lp.fun))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(rank_in_process(args.child)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = effects_file(args.orders, Path(folder))
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(child.stdout)
        figures["highs_rel_gap"] = highs_agreement(path)
    gap = abs(figures["upper_bound"] - figures["objective"]) / abs(figures["upper_bound"])
    print(
        "| orders | arms | binding capacities | rank time (s) | peak RSS (MB) | dual gap "
        f"| HiGHS gap ({HIGHS_ORDERS} orders) |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    caps = ", ".join(f"{a}={c} (price {figures[f'price_{a}']:.2f})" for a, c in CAPACITY.items())
    print(
        f"| {args.orders:,} | 6 | {caps} | {figures['seconds']:.2f} | {figures['peak_rss_mb']:.0f} "
        f"| {gap:.1e} | {figures['highs_rel_gap']:.1e} |"
    )


if __name__ == "__main__":
    main()
