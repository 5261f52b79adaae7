"""What each order-world preset is like: base rate, true effects, what signals explain.

Per preset (easy, realistic, hard) and seed: the base cancellation rate (control, true), the
mean and standard deviation of the true retained uplift per arm (points), the payment rescue's
mean uplift on failed payments, the share of the uplift's variance the signals explain (see
``uplift.data.simulate.explained_share``), the share of actions delivered per arm and the
shares of missing signals; and the share of the oracle's true net value (the demo's costs and
capacities) kept by the best policy a model could learn: the one that knows every order's
expected uplift given its signals (the mean over 60 draws of what the shop does not see),
scored on a further draw; and the power of the weekly learn check to see payment rescue's
effect reversed within one week of 30,000 orders, for a policy that gives it to every pending
or failed payment and holds out 10% of them (normal approximation, the 2.58 bar of five arms).
Mean over seeds, with the largest spread (max - min) over seeds.

    .venv/bin/python benchmarks/bench_worlds.py [--orders 200000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
from statistics import NormalDist

import numpy as np
import pandas as pd
from bench_models import machine, markdown

from uplift.data.simulate import (
    TREATMENT_ARMS,
    WORLDS,
    SignalDraws,
    SimulatedWorld,
    explained_share,
    signal_draws,
    simulate,
    true_uplift,
)
from uplift.loop.demo import CAPACITY, COSTS
from uplift.loop.truth import score_week
from uplift.models.oracle import true_effects
from uplift.policy.ranking import rank_orders

#: The learn check's two-sided bar for five arms at a 5% family-wise rate (Bonferroni).
LEARN_BAR = NormalDist().inv_cdf(1 - 0.05 / 10)


def signal_policy_share(world: str, seed: int, orders: int = 30_000) -> float:
    """True net value of the best policy on the signals, as a share of the oracle's."""
    draws = signal_draws(world, orders=orders, seed=seed, draws=61)
    actual = draws.truth(0)  # the world as it happens; the expectation leaves this draw out
    expected = SignalDraws(draws.p_cancel[1:], draws.order_value).truth()
    effects = true_effects(expected, draws.order_value)
    queue = rank_orders(effects, costs=COSTS, capacity=CAPACITY).queue
    log = pd.DataFrame({"order_id": expected["order_id"], "order_value": draws.order_value})
    log = log.merge(queue[["order_id", "arm"]], on="order_id")
    scores = score_week(log, actual, costs=COSTS, capacity=CAPACITY)
    return scores["true_value"] / scores["oracle_value"]


def reversal_power(sim: SimulatedWorld, week_orders: int = 30_000) -> float:
    """Power to flag payment rescue's reversal in one week (see the module's description)."""
    fixable = sim.log["payment_status"].isin(["pending", "retry_failed"]).to_numpy()
    p = float(sim.truth["p_cancel_control"].to_numpy()[fixable].mean())
    effect = float(true_uplift(sim.truth)["payment_rescue"].to_numpy()[fixable].mean())
    held, acted = 0.1 * fixable.mean() * week_orders, 0.85 * fixable.mean() * week_orders
    reversed_p = p + effect  # the arm now raises cancellation by as much as it lowered it
    se = np.sqrt(p * (1 - p) / held + reversed_p * (1 - reversed_p) / acted)
    return float(NormalDist().cdf(2 * effect / se - LEARN_BAR))


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
        "best policy on the signals, share of oracle": signal_policy_share(world, seed),
        "power to flag payment rescue reversed in its week": reversal_power(sim),
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
