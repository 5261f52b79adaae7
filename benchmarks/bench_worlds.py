"""What each order-world preset is like: base rate, true effects, what signals explain.

Per preset (easy, realistic, hard) and seed: the base cancellation rate (control, true), the
mean and standard deviation of the true retained uplift per arm (points), the payment rescue's
mean uplift on failed payments, the share of the uplift's variance the signals explain (see
``uplift.data.simulate.explained_share``), the share of actions delivered per arm and the
shares of missing signals. Mean over seeds, with the largest spread (max - min) over seeds.

    .venv/bin/python benchmarks/bench_worlds.py [--orders 200000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from bench_models import machine, markdown

from uplift.data.simulate import TREATMENT_ARMS, WORLDS, explained_share, simulate, true_uplift


def measure(world: str, orders: int, seed: int) -> dict[str, float]:
    sim = simulate(orders, weeks=4, seed=seed, world=world)
    uplift = true_uplift(sim.truth) * 100
    failed = sim.log["payment_status"].eq("retry_failed").to_numpy()
    share = explained_share(world, orders=10_000, seed=seed, draws=60)
    row = {
        "base cancel rate": float(sim.truth["p_cancel_control"].mean()),
        "payment_rescue on failed (pts)": float(uplift["payment_rescue"][failed].mean()),
        "stock unknown": float(sim.log["stock_confidence"].isna().mean()),
        "device unknown": float(sim.log["device"].isna().mean()),
    }
    for arm in TREATMENT_ARMS:
        row[f"{arm} mean (pts)"] = float(uplift[arm].mean())
        row[f"{arm} sd (pts)"] = float(uplift[arm].std())
        row[f"{arm} explained"] = float(share[arm])
        row[f"{arm} delivered"] = float(sim.truth[f"p_delivered_{arm}"].mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    columns = {}
    for world in WORLDS:
        runs = pd.DataFrame([measure(world, args.orders, seed) for seed in range(args.seeds)])
        columns[world] = runs.mean()
        columns[f"{world} spread"] = runs.max() - runs.min()
    table = pd.DataFrame(columns).rename_axis("figure").reset_index()
    command = (
        f".venv/bin/python benchmarks/bench_worlds.py --orders {args.orders} --seeds {args.seeds}"
    )
    print(
        f"# The order-world presets\n\n{machine()}\n\nCommand: `{command}` "
        f"({time.monotonic() - started:.0f} s)\n"
    )
    print(markdown(table.assign(**{c: table[c].astype(float) for c in columns}), digits=3))


if __name__ == "__main__":
    main()
