"""The allocation on the order world: speed, exactness, and what it is worth over greedy.

Three parts, each printing markdown tables (machine and command first) and writing them to
``benchmarks/results/policy-<part>.md``:

* ``speed``: ``rank_orders`` on 1,000,000 simulated orders x 6 arms (control + 5 actions) with
  two binding capacities. The effects are the simulator's truth (ranking starts after
  prediction). Ranking runs in a fresh process that reads the effects file, so its peak RSS is
  the ranking's, not the simulator's. Exactness: at full size the dual bound certifies the
  optimum (objective = bound); on random subsamples the objective is compared with scipy's
  HiGHS linear program.
* ``greedy``: the allocation against greedy baselines under binding capacities (no budget),
  in the easy and realistic worlds, 10 seeds each: 20,000 orders, the true effects and a
  model's (the true revenue uplift plus noise of half its spread per arm: R2 about 0.8), every
  policy scored with the true net value as a share of the constrained oracle's (the allocation
  on the true effects). The greedy baselines rank orders by their best net value: ``greedy,
  best arm only`` gives each its best arm while that arm has room, else control;
  ``greedy with fallback`` gives each the best arm of positive net value that still has room;
  ``greedy over pairs`` takes (order, arm) pairs of positive net value from the highest net
  value down, when the order has no arm yet and the arm has room.
* ``budget``: with a binding budget the allocation is the rounded Lagrangian solution; its
  value against the best integer allocation (scipy's HiGHS MILP) on small random instances
  whose values and costs are continuous (no ties), and on subsamples of the realistic world;
  with capacities alone, the same comparison (the LP is totally unimodular: the allocation
  should be the integer optimum); and one instance of identical orders (all tied at the
  budget's price), which the allocation must split rather than drop whole.

    .venv/bin/python benchmarks/bench_policy.py [--part speed|greedy|budget|all] [--orders N]
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from bench_models import machine, markdown
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, vstack

from uplift.data.files import atomic_path
from uplift.data.simulate import ARM_COSTS, simulate
from uplift.models.effects import Effects
from uplift.models.oracle import true_effects
from uplift.policy.allocation import allocate
from uplift.policy.ranking import rank_orders

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("speed", "greedy", "budget")
COSTS = {a: c for a, c in ARM_COSTS.items() if a != "control"}
ARMS = tuple(COSTS)

# speed
CAPACITY = {"agent_call": 4_000, "expedite": 3_000}
HIGHS_ORDERS = 2_000

# greedy: the capacities of tests/policy/test_policy.py, well below the orders whose best arm
# they are in the easy world (about 2,500, 530 and 450 of 20,000).
GREEDY_CAPACITY = {"payment_rescue": 300, "agent_call": 200, "expedite": 150}
GREEDY_ORDERS = 20_000
GREEDY_SEEDS = 10
GREEDY_WORLDS = ("easy", "realistic")
NOISE = 0.5  # model error: half the spread of each arm's true revenue uplift (R2 about 0.8)

# budget
BUDGET_INSTANCES = 200  # per kind
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# --------------------------------------------------------------------------------------------
# speed


def effects_file(orders: int, folder: Path) -> Path:
    world = simulate(orders, weeks=1, seed=2026)
    effects = true_effects(world.truth, world.log["order_value"])
    path = folder / "effects.parquet"
    effects.to_frame().to_parquet(path, index=False)
    return path


def rank_in_process(path: Path) -> dict[str, float]:
    """Read the effects, rank, and report time and peak memory (run in a child process)."""
    effects = pd.read_parquet(path)
    start = time.perf_counter()
    result = rank_orders(effects, costs=COSTS, capacity=CAPACITY, holdout=0.05, explore=0.02)
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
    effects = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(samples):
        rows = rng.choice(len(effects), HIGHS_ORDERS, replace=False)
        values = Effects.from_frame(effects.iloc[rows]).net_value(COSTS)
        cap = np.array([CAPACITY.get(a, math.inf) / 500 for a in values.arms])  # same tightness
        lp = highs(values.value, values.cost, cap, math.inf, integral=False)
        ours = allocate(values.value, values.cost, cap).objective
        worst = max(worst, abs(ours - lp) / abs(lp))
    return worst


def speed(args: argparse.Namespace) -> list[str]:
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
    caps = ", ".join(f"{a}={c} (price {figures[f'price_{a}']:.2f})" for a, c in CAPACITY.items())
    table = pd.DataFrame(
        {
            "orders": [args.orders],
            "arms": [6],
            "binding capacities": [caps],
            "rank s": [round(figures["seconds"], 2)],
            "peak RSS MB": [round(figures["peak_rss_mb"])],
            "dual gap": [f"{gap:.1e}"],
            f"HiGHS LP gap ({HIGHS_ORDERS:,} orders x 5)": [f"{figures['highs_rel_gap']:.1e}"],
        }
    )
    return [
        f"`simulate({args.orders:,}, weeks=1, seed=2026)`, true effects, the simulator's costs; "
        "`rank_orders(..., holdout=0.05, explore=0.02)` timed in a fresh process that reads "
        "the effects from Parquet (peak RSS of that process). Dual gap: (bound - objective) / "
        "bound. HiGHS LP gap: largest relative difference to scipy's HiGHS LP on 5 random "
        f"subsamples of {HIGHS_ORDERS:,} orders (capacities scaled to the same tightness).",
        markdown(table),
    ]


# --------------------------------------------------------------------------------------------
# Reference: the allocation as HiGHS's LP or MILP


def highs(
    value: FloatArray, cost: FloatArray, cap: FloatArray, budget: float, integral: bool
) -> float:
    """Optimal value of the allocation LP (or, ``integral``, the MILP) by scipy's HiGHS."""
    n, k = value.shape
    one_arm = coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), np.arange(n * k))))
    limited = np.flatnonzero(np.isfinite(cap))
    rows = np.tile(np.arange(limited.size), n)
    cols = (np.arange(n)[:, None] * k + limited[None, :]).ravel()
    per_arm = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(limited.size, n * k))
    blocks, upper = [one_arm, per_arm], [np.ones(n), cap[limited]]
    if math.isfinite(budget):
        blocks.append(coo_matrix(cost.reshape(1, -1)))
        upper.append(np.array([budget]))
    a_ub, b_ub = vstack(blocks).tocsr(), np.concatenate(upper)
    if integral:
        result = milp(
            -value.ravel(),
            constraints=LinearConstraint(a_ub, -np.inf, b_ub),
            integrality=np.ones(n * k),
            bounds=Bounds(0, 1),
        )
    else:
        result = linprog(-value.ravel(), A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed: {result.message}")
    return float(-result.fun)


# --------------------------------------------------------------------------------------------
# greedy


def greedy(value: FloatArray, capacity: FloatArray, fallback: bool) -> IntArray:
    """Greedy by rank: orders by their best net value, highest first; each gets its best arm
    while it has room (``fallback``: the best arm of positive net value with room), else
    control. Returns 0 for control, ``j + 1`` for column ``j``."""
    room = capacity.astype(np.float64).copy()
    arm = np.zeros(len(value), dtype=np.int64)
    preference = np.argsort(-value, axis=1, kind="stable")
    for order in np.argsort(-value.max(axis=1), kind="stable"):
        for j in preference[order] if fallback else preference[order, :1]:
            if value[order, j] <= 0:
                break
            if room[j] >= 1:
                arm[order], room[j] = j + 1, room[j] - 1
                break
    return arm


def greedy_pairs(value: FloatArray, capacity: FloatArray) -> IntArray:
    """Greedy over (order, arm) pairs of positive net value, highest first."""
    room = capacity.astype(np.float64).copy()
    arm = np.zeros(len(value), dtype=np.int64)
    k = value.shape[1]
    flat = value.ravel()
    for pair in np.argsort(-flat, kind="stable"):
        if flat[pair] <= 0:
            break
        order, j = divmod(int(pair), k)
        if arm[order] == 0 and room[j] >= 1:
            arm[order], room[j] = j + 1, room[j] - 1
    return arm


def allocation_arms(value: FloatArray, capacity: FloatArray) -> IntArray:
    return allocate(value, np.zeros_like(value), capacity).choice


POLICIES: dict[str, Callable[[FloatArray, FloatArray], IntArray]] = {
    "allocation (exact)": allocation_arms,
    "greedy with fallback": lambda v, c: greedy(v, c, fallback=True),
    "greedy over pairs": greedy_pairs,
    "greedy, best arm only": lambda v, c: greedy(v, c, fallback=False),
}


def greedy_seed(world: str, seed: int, orders: int = GREEDY_ORDERS) -> dict[str, float]:
    """Each policy's true net value as a share of the constrained oracle's, on one world draw,
    with the model's effects (``model: <policy>``) and the true ones (``truth: <policy>``)."""
    sim = simulate(orders, weeks=1, seed=seed, world=world)
    effects = true_effects(sim.truth, sim.log["order_value"]).to_frame()
    capacity = np.array([GREEDY_CAPACITY.get(a, math.inf) for a in ARMS])
    true_net = Effects.from_frame(effects).net_value(COSTS).value
    rng = np.random.default_rng(seed)
    noisy = effects.copy()
    for arm in ARMS:
        column = f"revenue_uplift_{arm}"
        noisy[column] += rng.normal(0, NOISE * effects[column].std(), len(effects))
    model_net = Effects.from_frame(noisy).net_value(COSTS).value
    oracle = allocate(true_net, np.zeros_like(true_net), capacity)
    binding = int((oracle.prices[np.isfinite(capacity)] > 0).sum())

    def share(arm: IntArray) -> float:
        chosen = arm > 0
        return float(true_net[chosen, arm[chosen] - 1].sum() / oracle.objective)

    row = {"world": world, "seed": seed, "binding capacities": binding}
    for name, policy in POLICIES.items():
        row[f"model: {name}"] = share(policy(model_net, capacity))
        row[f"truth: {name}"] = share(policy(true_net, capacity))
    return row


def greedy_runs(worlds: Iterable[str], seeds: Sequence[int]) -> pd.DataFrame:
    return pd.DataFrame([greedy_seed(world, seed) for world in worlds for seed in seeds])


def _spread(values: pd.Series, scale: float = 100.0) -> str:
    values = values * scale
    return (
        f"{values.mean():.1f} (sd {values.std(ddof=1):.1f}; {values.min():.1f} to "
        f"{values.max():.1f})"
    )


def greedy_part(args: argparse.Namespace) -> list[str]:
    seeds = list(range(args.seeds))
    runs = greedy_runs(GREEDY_WORLDS, seeds)
    rows = []
    for (world, effects), name in [
        ((w, e), n) for w in GREEDY_WORLDS for e in ("model", "truth") for n in POLICIES
    ]:
        shares = runs.loc[runs["world"] == world, f"{effects}: {name}"]
        rows.append(
            {"world": world, "effects": effects, "policy": name, "% of oracle": _spread(shares)}
        )
    table = pd.DataFrame(rows)
    paired = []
    for world in GREEDY_WORLDS:
        cell = runs[runs["world"] == world]
        for effects in ("model", "truth"):
            exact = cell[f"{effects}: allocation (exact)"]
            for name in list(POLICIES)[1:]:
                diff = exact - cell[f"{effects}: {name}"]
                paired.append(
                    {
                        "world": world,
                        "effects": effects,
                        "allocation minus": name,
                        "points": _spread(diff),
                        "seeds allocation ahead": f"{int((diff > 0).sum())} of {len(diff)}",
                    }
                )
    per_seed = runs[
        ["world", "seed", "binding capacities"] + [f"model: {n}" for n in POLICIES]
    ].copy()
    for name in POLICIES:
        per_seed[f"model: {name}"] = (100 * per_seed[f"model: {name}"]).map("{:.2f}".format)
    return [
        f"Per world and seed s = 0..{args.seeds - 1}: `simulate({GREEDY_ORDERS:,}, weeks=1, "
        f"seed=s, world=...)`, the simulator's costs, capacities {GREEDY_CAPACITY} and no "
        "budget. Effects: the model's (the true revenue uplift plus normal noise with "
        f"{NOISE} x the spread of each arm's true revenue uplift, drawn with seed s: R2 about "
        "0.8) or the true ones. Every policy is scored with the true net value, as a % of the "
        "constrained oracle's (the allocation on the true effects, same capacities). Cells: "
        "mean over seeds (sd; min to max).",
        markdown(table),
        "The allocation against each greedy baseline, paired by seed (points of the oracle's "
        "net value):",
        markdown(pd.DataFrame(paired)),
        "Per seed, the model's effects (% of the oracle's; `binding capacities`: capacities "
        "with a positive shadow price in the oracle's allocation):",
        markdown(per_seed, digits=4),
    ]


# --------------------------------------------------------------------------------------------
# budget


def budget_instance(
    kind: str, rng: np.random.Generator, world: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """One small instance (value, cost, capacity, budget) whose budget binds."""
    if kind == "order world":
        assert world is not None
        n = int(rng.integers(20, 300))
        rows = rng.choice(world.shape[1], n, replace=False)
        value, cost = world[0][rows], world[1][rows]
        k = value.shape[1]
    else:
        n, k = int(rng.integers(5, 80)), int(rng.integers(1, 6))
        if kind == "normal":
            value, cost = rng.normal(0, 5, (n, k)), rng.uniform(0, 2, (n, k))
        else:  # lognormal values, costs that grow with them
            value = rng.lognormal(0, 1, (n, k)) - 0.5
            cost = np.abs(value) * rng.uniform(0.2, 1.0, (n, k)) + rng.uniform(0, 0.1, (n, k))
    capacity = np.where(rng.random(k) < 0.5, rng.integers(0, n + 1, k), np.inf).astype(float)
    unlimited_spend = allocate(value, cost, capacity).budget_used
    budget = float(rng.uniform(0.05, 1.0) * unlimited_spend)
    return value, cost, capacity, budget


BUDGET_KINDS = ("normal", "lognormal", "order world")


def budget_runs(instances: int = BUDGET_INSTANCES, seed: int = 0) -> pd.DataFrame:
    """Per instance: the allocation's shortfall from the best integer allocation, with capacities
    alone and with the budget, in units of the largest single order's net value."""
    sim = simulate(20_000, weeks=1, seed=5)
    net = Effects.from_frame(true_effects(sim.truth, sim.log["order_value"]).to_frame()).net_value(
        COSTS
    )
    world = np.stack([net.value, net.cost])
    rng = np.random.default_rng(seed)
    rows = []
    for kind in BUDGET_KINDS:
        for _ in range(instances):
            value, cost, capacity, budget = budget_instance(kind, rng, world)
            largest = float(np.maximum(value, 0.0).max())
            alone = allocate(value, cost, capacity)
            best_alone = highs(value, cost, capacity, math.inf, integral=True)
            result = allocate(value, cost, capacity, budget)
            best = highs(value, cost, capacity, budget, integral=True)
            rows.append(
                {
                    "kind": kind,
                    "orders": len(value),
                    "capacities alone: shortfall / optimum": (best_alone - alone.objective)
                    / max(abs(best_alone), 1e-12),
                    "budget binds": result.budget_price > 0,
                    "binding constraints": int((result.prices > 0).sum()) + 1,
                    "shortfall": best - result.objective,
                    "shortfall / largest order": (best - result.objective) / largest,
                    "shortfall / optimum": (best - result.objective) / max(best, 1e-12),
                    "certificate covers it": result.upper_bound - result.objective
                    >= best - result.objective - 1e-6,
                }
            )
    return pd.DataFrame(rows)


def tied_instance(orders: int = 10, budget: float = 5.0) -> tuple[float, float]:
    """Identical orders (net value 1, cost 1): the allocation's value and the optimum's."""
    value, cost = np.ones((orders, 1)), np.ones((orders, 1))
    capacity = np.array([math.inf])
    ours = allocate(value, cost, capacity, budget).objective
    return ours, highs(value, cost, capacity, budget, integral=True)


def budget_part(args: argparse.Namespace) -> list[str]:
    runs = budget_runs()
    rows = []
    for kind, cell in runs.groupby("kind", sort=False):
        bound = cell[cell["budget binds"]]
        alone = cell["capacities alone: shortfall / optimum"]
        rows.append(
            {
                "instances": kind,
                "n": len(cell),
                "capacities alone: worst shortfall / optimum": f"{alone.abs().max():.1e}",
                "budget binds": len(bound),
                "short of optimum": f"{(bound['shortfall'] > 1e-6).mean():.0%}",
                "worst shortfall / largest order": round(
                    bound["shortfall / largest order"].max(), 3
                ),
                "worst shortfall per binding constraint / largest order": round(
                    (bound["shortfall / largest order"] / bound["binding constraints"]).max(), 3
                ),
                "shortfall / optimum, median": f"{bound['shortfall / optimum'].median():.2%}",
                "shortfall / optimum, worst": f"{bound['shortfall / optimum'].max():.1%}",
                "certificate covers it": "all" if bound["certificate covers it"].all() else "no",
            }
        )
    ours, best = tied_instance()
    return [
        f"{BUDGET_INSTANCES} instances of each kind (seed 0): `normal` (5-79 orders, 1-5 arms, "
        "values normal(0, 5), costs uniform(0, 2)), `lognormal` (values lognormal - 0.5, costs "
        "growing with them), `order world` (20-299 orders of `simulate(20_000, weeks=1, "
        "seed=5)`, true effects, the simulator's costs); each arm capped with probability 0.5 "
        "(a random capacity), and a budget of a random 5-100% of what the allocation spends "
        "without one. Optimum: scipy's HiGHS MILP. Shortfall: optimum minus the allocation's "
        "net value; `largest order`: the largest net value of one order on one arm; binding "
        "constraints: capacities with a positive price, plus the budget. `certificate covers "
        "it`: the reported `upper_bound - objective` is at least the shortfall.",
        markdown(pd.DataFrame(rows)),
        "Orders tied at the budget's price, split rather than dropped whole: 10 identical "
        "orders (net value 1, "
        f"cost 1, no capacity), budget 5: the allocation's net value {ours:g}, the optimum's "
        f"{best:g}.",
    ]


# --------------------------------------------------------------------------------------------


def write(
    args: argparse.Namespace, part: str, title: str, sections: list[str], started: float
) -> None:
    command = ".venv/bin/python benchmarks/bench_policy.py " + " ".join(sys.argv[1:])
    text = "\n\n".join(
        [
            f"# {title}",
            f"Command: `{command.strip()}` (generated file; {time.time() - started:.0f} s wall "
            "clock).",
            machine(),
            *sections,
        ]
    )
    print(text + "\n", flush=True)
    with atomic_path(Path(args.results) / f"policy-{part}.md") as tmp:
        tmp.write_text(text + "\n")


TITLES = {
    "speed": "Ranking speed and exactness",
    "greedy": "The allocation against greedy baselines under binding capacities",
    "budget": "The allocation against the best integer allocation",
}
RUNNERS: dict[str, Callable[[argparse.Namespace], list[str]]] = {
    "speed": speed,
    "greedy": greedy_part,
    "budget": budget_part,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders of --part speed")
    parser.add_argument("--seeds", type=int, default=GREEDY_SEEDS, help="seeds of --part greedy")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the .md results")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(rank_in_process(args.child)))
        return
    for part in PARTS if args.part == "all" else (args.part,):
        started = time.time()
        write(args, part, TITLES[part], RUNNERS[part](args), started)


if __name__ == "__main__":
    main()
