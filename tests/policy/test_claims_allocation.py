"""The README's allocation claims: exact with capacities alone, within one order's net value per
binding constraint with a budget, and what it keeps over greedy baselines.

The optimum is scipy's HiGHS MILP. The instances and the greedy baselines are those of
``benchmarks/bench_policy.py`` (imported from there, so the figures in
``benchmarks/results/policy-budget.md`` and ``policy-greedy.md`` and these bands come from one
piece of code); print the figures with ``-s``.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uplift.policy.allocation import allocate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
bench = importlib.import_module("bench_policy")

# HiGHS and our dual both solve to float precision (as in tests/policy/test_policy.py).
RTOL = 1e-6


def test_capacities_alone_give_the_integer_optimum() -> None:
    # With capacities alone the LP is totally unimodular: the allocation must equal the best
    # integer allocation, ties between orders and arms included (whole-number values).
    rng = np.random.default_rng(1)
    for trial in range(120):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        value = rng.normal(0, 5, (n, k))
        if trial % 2:
            value = np.round(value / 3)
        cost = rng.uniform(0, 2, (n, k))
        capacity = np.where(rng.random(k) < 0.7, rng.integers(0, n + 1, k), np.inf).astype(float)
        result = allocate(value, cost, capacity)
        best = bench.highs(value, cost, capacity, math.inf, integral=True)
        assert result.objective == pytest.approx(best, rel=RTOL, abs=RTOL), trial
        assert result.upper_bound == pytest.approx(best, rel=RTOL, abs=RTOL), trial


@pytest.mark.slow
def test_a_binding_budget_costs_at_most_one_order_per_binding_constraint() -> None:
    runs = bench.budget_runs()  # the benchmark's 600 instances, continuous values and costs
    with pd.option_context("display.width", 150):
        print(runs.groupby("kind").max(numeric_only=True))
    assert runs["capacities alone: shortfall / optimum"].abs().max() <= RTOL
    bound = runs[runs["budget binds"]]
    assert len(bound) >= 590  # the budgets are drawn below what the allocation would spend
    # The documented bound (uplift/policy/allocation.py): at most one order's net value per
    # coupling constraint that binds (each capacity with a price, and the budget).
    per_constraint = bound["shortfall / largest order"] / bound["binding constraints"]
    assert (per_constraint <= 1 + RTOL).all()
    # The README's figures: never more than one order's net value in all (worst 0.97), a median
    # shortfall of 0.08% of the optimum on order-world instances, and a certificate that always
    # covers the shortfall. The instances are seeded: these bands fail only if the code changes.
    assert 0.9 <= bound["shortfall / largest order"].max() <= 1.0
    world = bound[bound["kind"] == "order world"]
    assert world["shortfall / optimum"].median() <= 0.002
    assert bound["certificate covers it"].all()


def test_identical_orders_at_the_budget_price_are_split_not_dropped() -> None:
    ours, best = bench.tied_instance(orders=10, budget=5.0)  # the optimum treats 5 of them
    assert best == pytest.approx(5.0)
    assert ours == pytest.approx(best)
    ours, best = bench.tied_instance(orders=1_000, budget=300.0)
    assert ours == pytest.approx(best)


@pytest.mark.slow
def test_the_allocation_against_greedy_baselines() -> None:
    runs = bench.greedy_runs(("easy", "realistic"), range(10))
    shares = runs.groupby("world").mean(numeric_only=True)
    print(shares.T)
    # The README's figures (mean over 10 seeds, % of the constrained oracle's true net value),
    # each within half a point: the seeds are fixed, so these bands fail only on a change.
    quoted = [
        ("easy", "model: allocation (exact)", 0.901),
        ("easy", "model: greedy with fallback", 0.894),
        ("easy", "model: greedy over pairs", 0.898),
        ("easy", "model: greedy, best arm only", 0.729),
        ("realistic", "model: allocation (exact)", 0.889),
        ("realistic", "model: greedy with fallback", 0.886),
        ("realistic", "model: greedy over pairs", 0.886),
        ("realistic", "model: greedy, best arm only", 0.817),
        ("easy", "truth: greedy with fallback", 0.987),
        ("realistic", "truth: greedy with fallback", 0.992),
    ]
    for world, column, figure in quoted:
        assert abs(shares.loc[world, column] - figure) <= 0.005, (world, column)
    # Their spread over seeds: sd 0.3-0.4 points in the easy world, 0.7-1.1 in the realistic.
    spread = runs.groupby("world").std(numeric_only=True)
    assert (spread[[c for c in spread if c.startswith("model: ")]] <= 0.012).all().all()
    # With the true effects the allocation is the oracle, and every greedy baseline is below it.
    assert np.allclose(runs["truth: allocation (exact)"], 1.0, rtol=1e-9)
    for name in ("greedy with fallback", "greedy over pairs", "greedy, best arm only"):
        assert (runs[f"truth: {name}"] < 1.0).all(), name
    # With a model's effects the allocation beats greedy with fallback in most seeds, by under
    # a point on average: the gap the README quotes, not the 17 points of best-arm-only greedy.
    ahead = runs["model: allocation (exact)"] - runs["model: greedy with fallback"]
    by_world = ahead.groupby(runs["world"])
    assert (by_world.apply(lambda d: (d > 0).sum()) >= 9).all()
    assert (by_world.mean() < 0.01).all()
