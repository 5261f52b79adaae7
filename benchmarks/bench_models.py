"""Accuracy and speed of the uplift learners against causalml and econml.

Each part runs alone, prints markdown tables (with the machine and the command) and writes
them to ``benchmarks/results/<part>.md``:

* ``order``: the simulated order world, 200,000 training orders, 100,000 fresh test orders
  whose true uplift is known: correlation with the truth, policy value, fit time.
* ``ihdp``: IHDP (Hill 2011) replications 1-10: sqrt(PEHE) within and out of sample.
* ``hillstrom``: the Hillstrom e-mail experiment: held-out Qini per arm, for visit and spend.
* ``speed``: 1,000,000 orders x 6 arms x 20 features: fit and predict time, peak memory.

Run from the repository root: ``.venv/bin/python benchmarks/bench_models.py --part order``
(``--part all`` runs every part; see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from uplift.data.datasets import IHDP_FEATURES, IHDP_REPLICATIONS, hillstrom_log, load_ihdp
from uplift.data.files import atomic_path
from uplift.data.log import ExperimentLog
from uplift.data.simulate import (
    ARM_COSTS,
    TREATMENT_ARMS,
    WORLDS,
    SimulatedWorld,
    World,
    simulate,
    true_uplift,
)
from uplift.experiment.metrics import sqrt_pehe, uplift_metrics_by_arm
from uplift.models.catalog import BLEND_MEMBERS, DEFAULT_CANDIDATES, LEARNERS, make_learner
from uplift.models.effects import Effects
from uplift.models.oracle import oracle_policy
from uplift.models.training import train_uplift
from uplift.models.uplift_model import model_inputs

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("order", "ihdp", "hillstrom", "speed")
OURS = tuple(name for name in LEARNERS if not name.startswith(("causalml_", "econml_")))
CAUSALML = ("causalml_t", "causalml_x", "causalml_dr", "causalml_r", "causalml_s")
CONTRACT_LEARNERS = (*OURS, *CAUSALML, "econml_dr")
DEFAULT = "auto"
#: The Hillstrom row of a ranking drawn at random: what the Qini gives for no signal at all.
PLACEBO = "random ranking"
#: The candidates of `auto` that are single learners, not blends of others: the regret's yardstick.
SINGLE_CANDIDATES = tuple(c for c in DEFAULT_CANDIDATES if c not in BLEND_MEMBERS)
# CausalForestDML grows 6-arm honest forests; at 200,000 orders it would take most of an hour
# on two shared cores, so it is fitted on this many of the training orders (and said so).
FOREST_ORDERS = 20_000
# IHDP has ~670 training units (~125 treated): the package's default leaves of 200 rows would
# leave the treated model without a single split, so every learner gets small-data leaves.
SMALL_DATA = {"min_child_samples": 10, "final_min_child_samples": 20}
NOISE_FEATURES = 7  # the speed part adds these to the simulator's 13 inputs: 20 in all
SPEED_SEED = 11


# --------------------------------------------------------------------------------------------
# Reporting


def machine() -> str:
    """One markdown line naming the machine, its load and the library versions."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    libraries = ("causalml", "econml", "lightgbm", "scikit-learn", "numpy", "pandas")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Machine: `uname -m` {platform.machine()}, `nproc` {len(os.sched_getaffinity(0))}, "
        f"CPU {cpu}; Python {platform.python_version()}; load average at start {load}; "
        + ", ".join(f"{name} {version(name)}" for name in libraries)
        + "."
    )


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table; floats rounded to ``digits`` significant places for reading."""

    def cell(value: object) -> str:
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, int | np.integer):
            return f"{value:,}"
        if isinstance(value, float | np.floating):
            if np.isnan(value):
                return "n/a"
            return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
        return str(value)

    if "note" in table.columns:  # free text reads best at the end of the row
        notes = table["note"].fillna("")
        table = table.drop(columns="note").assign(note=notes)
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join([header, rule, *rows])


def results_head(title: str, started: float) -> list[str]:
    """The head of a results file: its title, the command that wrote it (this process's) with
    its wall clock since ``started``, and the machine."""
    command = " ".join([".venv/bin/python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return [
        f"# {title}",
        f"Command: `{command}` (generated file; {time.time() - started:.0f} s wall clock).",
        machine(),
    ]


def report(
    args: argparse.Namespace, part: str, title: str, sections: Sequence[str], started: float
) -> None:
    """Print a part's results and write them to ``<results>/<part>.md`` atomically."""
    text = "\n\n".join([*results_head(title, started), *sections])
    print(text + "\n", flush=True)
    with atomic_path(Path(args.results) / f"{part}.md") as tmp:
        tmp.write_text(text + "\n")


# --------------------------------------------------------------------------------------------
# Fitting through the package's learners


@dataclass(frozen=True)
class Training:
    """What a learner is fitted on, through the package's fit contract."""

    X: pd.DataFrame
    y: pd.Series
    arm: pd.Series
    propensity: pd.Series
    control: str

    def take(self, rows: np.ndarray) -> Training:
        """The same data restricted to the positions ``rows``."""
        return Training(
            self.X.iloc[rows],
            self.y.iloc[rows],
            self.arm.iloc[rows],
            self.propensity.iloc[rows],
            self.control,
        )


def training(log: ExperimentLog, outcome: str) -> Training:
    """A log's model inputs (features and order_value), outcome, arms and propensities."""
    frame = log.frame
    X = frame[list(model_inputs(log))]
    return Training(X, frame[outcome], frame["arm"], frame["propensity"], log.control)


def fit_predict(
    name: str,
    data: Training,
    X_test: pd.DataFrame,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, float]:
    """Fit a catalog learner through the package contract; its test uplift and fit seconds."""
    model = make_learner(name, seed=seed)
    known = model.get_params()
    model.set_params(**{k: v for k, v in (params or {}).items() if k in known})
    start = time.perf_counter()
    model.fit(data.X, data.y, arm=data.arm, propensity=data.propensity, control=data.control)
    seconds = time.perf_counter() - start
    return model.predict(X_test), seconds


def attempt(label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one learner's benchmark; a failure becomes a row saying so, not a lost part."""
    print(f"  {label} ...", file=sys.stderr, flush=True)
    try:
        return {"learner": label, **run()}
    except Exception as error:  # any library failure is reported in the table, not fatal
        return {"learner": label, "note": f"failed: {type(error).__name__}: {error}"[:200]}


# --------------------------------------------------------------------------------------------
# Part (a): the order world


def policy_net_value(
    uplift: pd.DataFrame, order_value: np.ndarray, true: pd.DataFrame
) -> tuple[float, float]:
    """True net value and true retained revenue of the argmax-net-value policy of ``uplift``.

    The policy gives each order the arm with the highest predicted ``uplift x order_value -
    cost``, or nothing when none is positive; it is scored with the TRUE uplift.
    """
    arms = list(TREATMENT_ARMS)
    costs = np.array([ARM_COSTS[a] for a in arms])
    net = uplift[arms].to_numpy() * order_value[:, None] - costs
    best = net.argmax(axis=1)
    act = net.max(axis=1) > 0
    rows = np.arange(len(net))
    revenue = true[arms].to_numpy()[rows, best] * order_value * act
    return float((revenue - costs[best] * act).sum()), float(revenue.sum())


def order_row(
    uplift: pd.DataFrame, true: pd.DataFrame, value: np.ndarray, oracle: float
) -> dict[str, Any]:
    row: dict[str, Any] = {f"corr {a}": uplift[a].corr(true[a]) for a in TREATMENT_ARMS}
    row["mean corr"] = float(np.mean([row[f"corr {a}"] for a in TREATMENT_ARMS]))
    net, revenue = policy_net_value(uplift, value, true)
    row["net value % of oracle"] = 100 * net / oracle
    row["incremental retained revenue"] = revenue
    return row


def sample(n: int, rows: int) -> np.ndarray:
    """A random subset of ``rows`` of ``n`` positions (the log is sorted by time: no head)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(rows, n), replace=False))


@dataclass(frozen=True, eq=False)
class OrderTask:
    """A training log and fresh test orders of the order world, with the test orders' truth."""

    train: ExperimentLog
    test: ExperimentLog
    true: pd.DataFrame
    value: np.ndarray
    oracle: float

    @classmethod
    def of(cls, train: SimulatedWorld, fresh: SimulatedWorld) -> OrderTask:
        test = ExperimentLog.from_frame(fresh.log)
        value = test.frame["order_value"].to_numpy(float)
        return cls(
            train=ExperimentLog.from_frame(train.log),
            test=test,
            true=true_uplift(fresh.truth).set_axis(test.frame.index),
            value=value,
            oracle=float(oracle_policy(fresh.truth, value)["net_value"].sum()),
        )

    @classmethod
    def of_grid(cls, world: str, orders: int, seed: int, test_orders: int) -> OrderTask:
        """The grid's cell ``world`` x ``orders`` for ``seed``: its log and fresh test orders."""
        spec = GRID_WORLDS[world]
        return cls.of(
            simulate(orders, seed=100 + seed, world=spec),
            simulate(test_orders, seed=200 + seed, world=spec, start_week="2026-W44"),
        )

    @property
    def X_test(self) -> pd.DataFrame:
        return self.test.frame[list(model_inputs(self.test))]

    def share(self, uplift: pd.DataFrame) -> float:
        """The true share (%) of the oracle's net value kept by the policy ``uplift`` ranks."""
        return 100 * policy_net_value(uplift, self.value, self.true)[0] / self.oracle


def part_order(args: argparse.Namespace) -> None:
    started = time.time()
    task = OrderTask.of(
        simulate(args.orders, seed=1, world=args.world),
        simulate(args.test_orders, seed=2, world=args.world),
    )
    train, test, true, value, oracle = task.train, task.test, task.true, task.value, task.oracle
    data = training(train, "retained")
    X_test = task.X_test

    selections: list[pd.DataFrame] = []

    def ours() -> dict[str, Any]:
        start = time.perf_counter()
        model = train_uplift(train, costs=ARM_COSTS)
        seconds = time.perf_counter() - start
        if model.selection is not None:
            selections.append(model.selection.scores)
        uplift = model.predict_effects(X_test).uplift("retained")
        return {**order_row(uplift, true, value, oracle), "fit s": seconds, "note": model.learner}

    def contract(name: str, rows: int | None = None) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            subset = data if rows is None else data.take(sample(len(data.X), rows))
            uplift, seconds = fit_predict(name, subset, X_test)
            note = "" if rows is None else f"fitted on {len(subset.X):,} random training orders"
            return {**order_row(uplift, true, value, oracle), "fit s": seconds, "note": note}

        return run

    rows = [attempt(f"ours ({DEFAULT})", ours)]
    rows += [attempt(name, contract(name)) for name in CONTRACT_LEARNERS]
    rows.append(attempt("econml_forest", contract("econml_forest", FOREST_ORDERS)))
    table = pd.DataFrame(rows)
    table["fit time / ours"] = table["fit s"] / table["fit s"].iloc[0]
    oracle_line = (
        f"Oracle (true best net value per order): {oracle:,.0f} currency units on "
        f"{len(test):,} test orders; treat-none = 0. Policy: argmax of predicted retained "
        "uplift x order_value - arm cost, no action when negative; scored with the true uplift. "
        "`incremental retained revenue`: the true revenue the policy keeps over treat-none, "
        "before arm costs."
    )
    report(
        args,
        "order" if args.world == "realistic" else f"order-{args.world}",
        f"Order world ({args.world}): {args.orders:,} training orders, {args.test_orders:,} "
        "fresh test orders",
        [
            f"Training log `simulate(orders, seed=1, world={args.world!r})` (randomised, 20% "
            f"control); test orders `simulate(test_orders, seed=2, world={args.world!r})`. "
            "Every learner gets the logged propensities. "
            "`corr <arm>`: Pearson correlation of predicted and true retained uplift on the test "
            "orders. `ours (auto)` includes choosing the learner (its pick is in `note`).",
            oracle_line,
            markdown(table),
            *_beaten_by(table, selections),
        ],
        started,
    )


#: The easy world with every effect at a fifth of its size: the small-effect target of the grid.
SCALED = World("easy-0.2", effect_scale=dict.fromkeys(TREATMENT_ARMS, 0.2))
GRID_WORLDS: dict[str, World] = {**WORLDS, SCALED.name: SCALED}
DEFAULT_GRID_CELLS = (
    ",".join(f"{w}:{n}" for w in ("realistic", "hard") for n in (20_000, 200_000))
    + f",{SCALED.name}:200000"
)


def grid_cell(world: str, orders: int, seed: int, test_orders: int) -> list[dict[str, Any]]:
    """Every learner's share of the oracle's net value in one cell of the grid (one seed).

    Every learner is fitted with the cell's seed, so ``ours (auto)`` equals the row of the
    candidate it chose, and the selection regret is the best candidate's share minus it.
    """
    task = OrderTask.of_grid(world, orders, seed, test_orders)
    train, share = task.train, task.share
    data = training(train, "retained")
    X_test = task.X_test

    def ours() -> dict[str, Any]:
        model = train_uplift(train, costs=ARM_COSTS, seed=seed)
        effects = model.predict_effects(X_test).uplift("retained")
        return {"share": share(effects), "note": model.learner}

    def contract(
        name: str, rows: int | None = None, params: dict[str, Any] | None = None
    ) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            subset = data if rows is None else data.take(sample(len(data.X), rows))
            return {"share": share(fit_predict(name, subset, X_test, params, seed=seed)[0])}

        return run

    rows = [attempt(f"ours ({DEFAULT})", ours)]
    rows += [attempt(name, contract(name)) for name in CONTRACT_LEARNERS]
    # The S-learner unbagged: what the bootstrap models add, on the same orders and seed.
    rows.append(attempt("s_lgbm, one model", contract("s_lgbm", params={"n_bags": 1})))
    rows.append(attempt("econml_forest", contract("econml_forest", FOREST_ORDERS)))
    return [{**row, "world": world, "orders": orders, "seed": seed} for row in rows]


def grid_cells(spec: str) -> list[tuple[str, int]]:
    """``world:orders`` pairs of ``--grid-cells``, checked against the worlds."""
    cells = []
    for item in spec.split(","):
        world, _, orders = item.partition(":")
        if world not in GRID_WORLDS or not orders.isdigit():
            worlds = ", ".join(GRID_WORLDS)
            raise SystemExit(f"--grid-cells: {item!r} is not WORLD:ORDERS ({worlds})")
        cells.append((world, int(orders)))
    return cells


def grid_parser(description: str, cells: str) -> argparse.ArgumentParser:
    """The options of a benchmark that runs cells and seeds of the grid (see :func:`over_grid`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--grid-seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first .. first + grid-seeds - 1 (the grid's are 0-4; defaults were chosen on "
        "10-14); results of other seeds than 0-4 are written under their own names",
    )
    parser.add_argument("--grid-cells", default=cells)
    parser.add_argument("--test-orders", type=int, default=100_000)
    parser.add_argument("--results", default=str(RESULTS))
    return parser


def over_grid(
    args: argparse.Namespace, cell: Callable[[str, int, int, int], dict[str, Any]]
) -> pd.DataFrame:
    """One row per cell and seed: ``cell(world, orders, seed, test_orders)``."""
    rows = []
    for world, orders in grid_cells(args.grid_cells):
        for seed in range(args.first_seed, args.first_seed + args.grid_seeds):
            print(f"{world}, {orders:,} orders, seed {seed}", file=sys.stderr, flush=True)
            rows.append(cell(world, orders, seed, args.test_orders))
    return pd.DataFrame(rows)


def write_grid_results(args: argparse.Namespace, name: str, text: str, frame: pd.DataFrame) -> None:
    """Print ``text``; write it as ``<name>.md`` and the rows of :func:`over_grid` as
    ``<name>.csv`` to ``--results``."""
    print(text)
    folder = Path(args.results)
    if args.first_seed != 0:
        name += f"-seeds-{args.first_seed}-{args.first_seed + args.grid_seeds - 1}"
    with atomic_path(folder / f"{name}.md") as tmp:
        tmp.write_text(text + "\n")
    with atomic_path(folder / f"{name}.csv") as tmp:
        frame.to_csv(tmp, index=False)


def spread_by_cell(frame: pd.DataFrame, columns: Sequence[str], digits: int) -> pd.DataFrame:
    """Per cell of :func:`over_grid`'s rows (index world, orders): each column's mean over
    seeds with its range, as text ``mean (min to max)``."""
    per_cell = frame.groupby(["world", "orders"], sort=False)[list(columns)]
    mean, low, high = per_cell.mean(), per_cell.min(), per_cell.max()
    return pd.DataFrame(
        {
            c: [
                f"{m:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"
                for m, lo, hi in zip(mean[c], low[c], high[c], strict=True)
            ]
            for c in columns
        },
        index=mean.index,
    )


def selection_regret(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell and seed: the best single candidate's true share minus the share of what
    ``auto`` chose (a blend of the candidates can beat them all: the regret is then negative)."""
    ours = frame[frame["learner"] == f"ours ({DEFAULT})"].set_index(["world", "orders", "seed"])
    candidates = frame[frame["learner"].isin(SINGLE_CANDIDATES)]
    best = candidates.groupby(["world", "orders", "seed"])["share"].max()
    regret = (best - ours["share"]).rename("regret").reset_index()
    return regret


def part_grid(args: argparse.Namespace) -> None:
    started = time.time()
    cells = []
    for world, orders in grid_cells(args.grid_cells):
        for seed in range(args.grid_seeds):
            print(f"{world}, {orders:,} orders, seed {seed}", file=sys.stderr, flush=True)
            cells += grid_cell(world, orders, seed, args.test_orders)
            # Every cell is kept as it comes, so a long run is never lost to the summary.
            pd.DataFrame(cells).to_csv(Path(args.results) / "grid-cells.csv", index=False)
    frame = pd.DataFrame(cells)
    stats = frame.groupby(["learner", "world", "orders"], sort=False)["share"].agg(
        ["mean", "min", "max"]
    )
    cell_text = stats.apply(
        lambda r: f"{r['mean']:.1f} ({r['min']:.1f} to {r['max']:.1f})", axis=1
    ).rename("share")
    long = cell_text.reset_index()
    long["cell"] = long["world"] + ", " + long["orders"].map("{:,}".format)
    table = long.pivot(index="learner", columns="cell", values="share")
    table = table.reindex(index=long["learner"].unique(), columns=long["cell"].unique())
    table = table.rename_axis(columns=None).reset_index()
    grid_mean = frame.groupby("learner", sort=False)["share"].mean()
    table["grid mean"] = table["learner"].map(grid_mean).map("{:.1f}".format)
    picks = frame[frame["learner"] == f"ours ({DEFAULT})"].groupby(["world", "orders"])["note"]
    pick_lines = [
        f"- {world}, {orders:,} orders: {', '.join(sorted(map(str, notes)))}"
        for (world, orders), notes in picks
    ]
    regret = selection_regret(frame)
    per_cell = regret.groupby(["world", "orders"], sort=False)["regret"].agg(["mean", "max"])
    regret_lines = [
        f"- {world}, {orders:,} orders: mean {mean:.2f}, largest {largest:.2f}"
        for (world, orders), mean, largest in zip(
            per_cell.index, per_cell["mean"], per_cell["max"], strict=True
        )
    ]
    below = regret["regret"].clip(lower=0)
    regret_lines.append(
        f"- whole grid: mean {regret['regret'].mean():.2f} points; counting only the seeds "
        f"where `auto` is below the best candidate (the others as 0): {below.mean():.2f}"
    )
    report(
        args,
        "grid",
        f"Learners across worlds, sizes and {args.grid_seeds} seeds",
        [
            f"Each cell: training log `simulate(orders, seed=100 + s, world=...)` (randomised), "
            f"{args.test_orders:,} fresh test orders `simulate(test_orders, seed=200 + s, "
            "start_week='2026-W44')`, for seeds s = 0.."
            f"{args.grid_seeds - 1}; every learner is fitted with random_state s. Figure: the "
            "true net value of the learner's policy (argmax of predicted uplift x order_value - "
            "cost, none if negative) as a % of the oracle's on the test orders; mean over seeds "
            f"(min to max). econml_forest is fitted on {FOREST_ORDERS:,} random training "
            f"orders. `{SCALED.name}` is the easy world with every effect scaled to 0.2.",
            markdown(table),
            "What `auto` chose, per seed:",
            "\n".join(pick_lines),
            f"Selection regret (points of the oracle's share): the best of the single "
            f"candidates {', '.join(SINGLE_CANDIDATES)} in the seed's cell minus what `auto` "
            "chose (negative where the blend beats both).",
            "\n".join(regret_lines),
        ],
        started,
    )


def _beaten_by(table: pd.DataFrame, selections: list[pd.DataFrame]) -> list[str]:
    """Which learners beat ``ours (auto)`` here, and the held-out scores it chose by."""
    share = "net value % of oracle"
    if share not in table.columns:
        return []
    better = table.loc[table[share] > table[share].iloc[0], "learner"].tolist()
    if not better:
        return [f"No learner beats `ours ({DEFAULT})` on the oracle's net value."]
    lines = [
        f"Above `ours ({DEFAULT})` on the oracle's net value: {', '.join(better)}. `auto` "
        "keeps its default candidate unless another one's policy is clearly better (paired "
        "95% interval above zero) by the doubly-robust value on cross-fitted folds of the "
        "training log (blocks of decision time), not on these test orders. Its held-out "
        "scores:"
    ]
    if selections:
        columns = ["learner", "policy_value", "se", "diff_to_default", "diff_se", "qini"]
        columns.append("clearly_better")
        lines.append(markdown(selections[0][[*columns, "chosen"]]))
    return lines


# --------------------------------------------------------------------------------------------
# Part (b): IHDP


def logged_propensity(X: pd.DataFrame, treated: np.ndarray) -> np.ndarray:
    """P(own arm | x) from a logistic regression: IHDP is observational, no logged one exists."""
    p = LogisticRegression(max_iter=2000).fit(X, treated).predict_proba(X)[:, 1]
    p = np.clip(p, 0.02, 0.98)
    return np.where(treated == 1, p, 1 - p)


def ihdp_scores(
    name: str, data: Training, X: pd.DataFrame, test: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    """sqrt(PEHE) of one learner on one replication, on the training and held-out units."""
    uplift, seconds = fit_predict(name, data, X, params=SMALL_DATA)
    effect = uplift["treated"].to_numpy()
    return {
        "within": sqrt_pehe(effect[~test], truth[~test]),
        "out": sqrt_pehe(effect[test], truth[test]),
        "fit s": seconds,
    }


def part_ihdp(args: argparse.Namespace) -> None:
    started = time.time()
    scores: dict[str, list[tuple[float, float, float]]] = {}
    for replication in IHDP_REPLICATIONS:
        loaded = load_ihdp(replication)
        n = len(loaded.log)
        test = np.zeros(n, dtype=bool)
        test[np.random.default_rng(replication).permutation(n)[: n // 10]] = True
        X = loaded.log[list(IHDP_FEATURES)]
        treated = loaded.log["treatment"].to_numpy()
        arm = pd.Series(np.where(treated == 1, "treated", "control"), index=X.index)
        p = pd.Series(logged_propensity(X[~test], treated[~test]), index=X.index[~test])
        data = Training(X[~test], loaded.log["y_factual"][~test], arm[~test], p, "control")
        truth = loaded.true_cate.to_numpy()
        for name in CONTRACT_LEARNERS:
            run = partial(ihdp_scores, name, data, X, test, truth)
            row = attempt(f"{name} (replication {replication})", run)
            if "out" in row:
                scores.setdefault(name, []).append((row["within"], row["out"], row["fit s"]))
    rows = []
    for name, values in scores.items():
        within, out, seconds = (np.array(v) for v in zip(*values, strict=True))
        rows.append(
            {
                "learner": name,
                "replications": len(out),
                "sqrt PEHE out of sample (mean)": out.mean(),
                "standard error": out.std(ddof=1) / np.sqrt(len(out)),
                "out of sample (median)": float(np.median(out)),
                "sqrt PEHE within sample (mean)": within.mean(),
                "fit s (mean)": seconds.mean(),
            }
        )
    report(
        args,
        "ihdp",
        "IHDP (Hill 2011, NPCI setting A): 10 replications",
        [
            "Protocol: per replication a random 90/10 split (seed = replication number); each "
            "learner is fitted on the 90% (about 672 units) on `y_factual` and scored against "
            "the true CATE mu1 - mu0: `out of sample` on the 10% held out (74 units), `within "
            "sample` on the training units. The propensity passed to every learner is a "
            "logistic regression of treatment on x1..x25 (IHDP has no logged one), clipped to "
            "[0.02, 0.98]. Small-data LightGBM leaves for all: "
            f"{SMALL_DATA}. `auto` needs an experiment log with a 0/1 or non-negative "
            "outcome; IHDP outcomes are negative for some units, so our learners are run "
            "through the learner contract instead. Replication 9 (true ATE 10.5, the most "
            "heterogeneous) dominates the means and standard errors; the median is less "
            "sensitive to it.",
            markdown(pd.DataFrame(rows)),
        ],
        started,
    )


# --------------------------------------------------------------------------------------------
# Part (c): Hillstrom


def hillstrom_qini(effects: Effects, test: ExperimentLog) -> dict[str, float]:
    """Held-out Qini coefficient per arm for visit (retained) and spend (revenue)."""
    row = {}
    for outcome, label in (("retained", "visit"), ("revenue", "spend")):
        scores = uplift_metrics_by_arm(
            effects.uplift(outcome).set_axis(test.frame.index),
            test.frame,
            outcome=outcome,
            control=test.control,
        )
        for arm, qini in zip(scores["arm"], scores["qini_coefficient"], strict=True):
            row[f"Qini {label} {arm}"] = float(qini)
    return row


def hillstrom_split(log: ExperimentLog, split: int) -> tuple[ExperimentLog, ExperimentLog]:
    """Random 70% to train and 30% held out, drawn with seed ``split``."""
    held_out = np.zeros(len(log), dtype=bool)
    order = np.random.default_rng(split).permutation(len(log))
    held_out[order[: int(0.3 * len(log))]] = True
    return log.subset(~held_out), log.subset(held_out)


def hillstrom_rows(train: ExperimentLog, test: ExperimentLog, split: int) -> list[dict[str, Any]]:
    """Every learner's held-out Qini per arm and outcome on one split."""
    X_test = test.frame[list(model_inputs(test))]

    def ours() -> dict[str, Any]:
        start = time.perf_counter()
        model = train_uplift(train, seed=split)
        seconds = time.perf_counter() - start
        return {
            **hillstrom_qini(model.predict_effects(X_test), test),
            "fit s": seconds,
            "note": model.learner,
        }

    def contract(name: str) -> dict[str, Any]:
        uplifts, seconds = {}, 0.0
        for outcome in ("retained", "revenue"):
            uplifts[outcome], took = fit_predict(name, training(train, outcome), X_test, seed=split)
            seconds += took
        effects = Effects(
            test.control, test.treatment_arms, uplifts["retained"], uplifts["revenue"]
        )
        return {**hillstrom_qini(effects, test), "fit s": seconds}

    def placebo() -> dict[str, Any]:
        rng = np.random.default_rng(split)
        arms = list(test.treatment_arms)

        def draw() -> pd.DataFrame:
            return pd.DataFrame(rng.random((len(test), len(arms))), columns=arms)

        effects = Effects(test.control, test.treatment_arms, draw(), draw())
        return {**hillstrom_qini(effects, test), "fit s": 0.0}

    rows = [attempt(f"ours ({DEFAULT})", ours)]
    rows += [attempt(name, partial(contract, name)) for name in CONTRACT_LEARNERS]
    rows += [attempt(PLACEBO, placebo)]
    return [{**row, "split": split} for row in rows]


def paired_verdict(frame: pd.DataFrame, means: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Ours against the best causalml / econml learner (by mean) of each column, split by split.

    The learners share every split, so the difference is taken within splits: its standard
    error leaves out how hard a split is for everyone, which the spread over splits includes."""
    ours = f"ours ({DEFAULT})"
    rivals = means.loc[[name for name in means.index if name.startswith(("causalml_", "econml_"))]]
    by_split = frame.pivot_table(index="split", columns="learner", values=columns)
    rows = []
    for column in columns:
        best = str(rivals[column].idxmax())
        gap = by_split[(column, ours)] - by_split[(column, best)]
        lead = by_split[(column, best)] - by_split[(column, PLACEBO)]
        rows.append(
            {
                "column": column,
                ours: means.loc[ours, column],
                "best causalml / econml learner": best,
                "its Qini": rivals.loc[best, column],
                "ours - it, paired": gap.mean(),
                "its standard error": gap.std() / np.sqrt(gap.count()),
                "splits ours >= it": f"{int((gap >= 0).sum())} of {gap.count()}",
                "it - random ranking, paired": lead.mean(),
                "standard error (it - random)": lead.std() / np.sqrt(lead.count()),
            }
        )
    return pd.DataFrame(rows)


def part_hillstrom(args: argparse.Namespace) -> None:
    started = time.time()
    log = hillstrom_log()
    rows = []
    for split in range(args.splits):
        print(f"split {split}", file=sys.stderr, flush=True)
        rows += hillstrom_rows(*hillstrom_split(log, split), split)
    frame = pd.DataFrame(rows)
    qini = [c for c in frame.columns if c.startswith("Qini ")]
    grouped = frame.groupby("learner", sort=False)
    means = grouped[qini].mean()
    spread = grouped[qini].std()
    table = means.map("{:.4f}".format) + " (" + spread.map("{:.4f}".format) + ")"
    table["fit s"] = grouped["fit s"].mean().map("{:.2f}".format)
    table["note"] = grouped["note"].agg(lambda n: ", ".join(sorted(map(str, n.dropna()))))
    verdict = paired_verdict(frame, means, qini)
    report(
        args,
        "hillstrom",
        "Hillstrom e-mail experiment: held-out Qini per arm",
        [
            f"{args.splits} random 70/30 splits of the 64,000 customers (seeds 0..."
            f"{args.splits - 1}); on each, every learner is fitted on the 70% on visit (as "
            "`retained`) and on spend (as `revenue`) with random_state = the split's seed, and "
            "ranks the 30% held out. Qini coefficient of `uplift.experiment.metrics` (area "
            "between the Qini curve and random ranking, per treated customer: random ranking "
            "scores about 0). Cells: mean over splits (standard deviation). `fit s` covers "
            "both outcomes; `ours (auto)` fits visit and spend and chooses the learner (its "
            "picks are in `note`).",
            markdown(table.reset_index(), digits=4),
            f"`{PLACEBO}` gives every customer random numbers as uplift (drawn with the "
            "split's seed): its spread over splits is what the Qini gives with no signal.",
            "Ours against the best causalml or econml learner of each column (means over "
            "splits; the differences and their standard errors taken within splits), and that "
            f"learner against `{PLACEBO}`:",
            markdown(verdict, digits=4),
        ],
        started,
    )


# --------------------------------------------------------------------------------------------
# Part (d): speed, each configuration in a fresh process so its peak memory is its own


SPEED_RUNS: dict[str, tuple[int, str]] = {
    "ours (auto)": (1_000_000, "auto"),
    "t_lgbm": (1_000_000, "t_lgbm"),
    "causalml_x": (1_000_000, "causalml_x"),
    "ours (auto), 100k": (100_000, "auto"),
    "causalml UpliftRandomForest, 100k": (100_000, "uplift_forest"),
}
FOREST_TREES = 10


def memory_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS: now, VmHWM: peak) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def speed_log(orders: int) -> ExperimentLog:
    """Simulated orders plus noise columns, for 20 model inputs in all."""
    frame = simulate(orders, seed=SPEED_SEED).log
    rng = np.random.default_rng(SPEED_SEED)
    for i in range(NOISE_FEATURES):
        frame[f"noise_{i}"] = rng.normal(size=orders)
    return ExperimentLog.from_frame(frame)


def speed_worker(label: str) -> None:
    """Fit and predict one configuration; print its measurements as one JSON line."""
    orders, learner = SPEED_RUNS[label]
    log = speed_log(orders)
    X = log.frame[list(model_inputs(log))]
    data_mb = memory_mb("VmRSS")
    start = time.perf_counter()
    predict, note = fit_for_speed(learner, log, X)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    predict()
    result = {
        "orders": orders,
        "inputs": X.shape[1],
        "fit s": fit_s,
        "predict s": time.perf_counter() - start,
        "data RSS MB": data_mb,
        "peak RSS MB": memory_mb("VmHWM"),
        "note": note,
    }
    print(json.dumps(result))


def fit_for_speed(
    learner: str, log: ExperimentLog, X: pd.DataFrame
) -> tuple[Callable[[], object], str]:
    """Fit one speed configuration; how to predict the same orders with it, and a note."""
    if learner == "uplift_forest":
        return fit_uplift_forest(log, X), f"{FOREST_TREES} trees, max_depth 5"
    if learner == "auto":
        bundle = train_uplift(log, costs=ARM_COSTS)
        return partial(bundle.predict_effects, X), f"chose {bundle.learner}"
    data = training(log, "retained")
    model = make_learner(learner, seed=0)
    model.fit(data.X, data.y, arm=data.arm, propensity=data.propensity, control=data.control)
    return partial(model.predict, X), ""


def fit_uplift_forest(log: ExperimentLog, X: pd.DataFrame) -> Callable[[], Any]:
    """causalml's UpliftRandomForestClassifier on integer-coded features (it needs numbers)."""
    from causalml.inference.tree import UpliftRandomForestClassifier  # noqa: PLC0415 - causalml: seconds to import; only this run uses it

    codes = np.column_stack(
        [
            X[c].astype("category").cat.codes if not pd.api.types.is_numeric_dtype(X[c]) else X[c]
            for c in X.columns
        ]
    ).astype(float)
    forest = UpliftRandomForestClassifier(
        control_name=log.control,
        n_estimators=FOREST_TREES,
        max_depth=5,
        min_samples_leaf=100,
        n_jobs=2,
        random_state=0,
    )
    forest.fit(codes, treatment=log.frame["arm"].to_numpy(), y=log.frame["retained"].to_numpy())
    return lambda: forest.predict(codes)


def part_speed(args: argparse.Namespace) -> None:
    started = time.time()
    rows = []
    for label in SPEED_RUNS:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--speed-worker", label],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode == 0 and lines:
            rows.append({"run": label, **json.loads(lines[-1])})
        else:
            rows.append({"run": label, "note": f"failed: {done.stderr.strip()[-200:]}"})
    table = pd.DataFrame(rows)
    by_run = table.set_index("run").reindex(columns=["fit s"])["fit s"]
    table["fit time / ours (auto) on the same orders"] = [
        by_run[label] / by_run["ours (auto), 100k" if orders == 100_000 else "ours (auto)"]
        for label, (orders, _) in SPEED_RUNS.items()
    ]
    report(
        args,
        "speed",
        "Speed: 1,000,000 orders x 6 arms x 20 inputs",
        [
            f"`simulate(orders, seed={SPEED_SEED})` with {NOISE_FEATURES} standard-normal noise "
            "columns added (12 simulator features + order_value + 7 noise = 20 inputs); "
            "retained outcome; logged propensities passed. Each run is a fresh process: "
            "`data RSS` is its memory after building the log, `peak RSS` its high-water mark "
            "(VmHWM) over simulate, fit and predict. Predict = the same orders. `ours (auto)` "
            "chooses the learner on a validation split, then fits it (and a control-rate "
            f"model). causalml's UpliftRandomForestClassifier ran with {FOREST_TREES} trees "
            "(max_depth 5) on 100,000 orders only, because it is too slow for a million on "
            "this machine; its ratio is to `ours (auto)` on the same 100,000 orders. LightGBM "
            "and the forest use 2 threads. The machine is shared: times can vary by +-30%.",
            markdown(table),
        ],
        started,
    )


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "grid", "all"), default="all")
    parser.add_argument("--orders", type=int, default=200_000, help="order-world training orders")
    parser.add_argument("--test-orders", type=int, default=100_000)
    parser.add_argument("--grid-seeds", type=int, default=5, help="seeds per cell of --part grid")
    parser.add_argument(
        "--grid-cells",
        default=DEFAULT_GRID_CELLS,
        help="WORLD:ORDERS cells of --part grid, comma-separated",
    )
    parser.add_argument(
        "--world", choices=("easy", "realistic", "hard"), default="realistic", help="order world"
    )
    parser.add_argument("--splits", type=int, default=20, help="random splits of --part hillstrom")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the .md results")
    parser.add_argument("--speed-worker", choices=tuple(SPEED_RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_worker:
        speed_worker(args.speed_worker)
        return
    runners = {
        "order": part_order,
        "ihdp": part_ihdp,
        "hillstrom": part_hillstrom,
        "speed": part_speed,
        "grid": part_grid,
    }
    for part in PARTS if args.part == "all" else (args.part,):
        runners[part](args)


if __name__ == "__main__":
    main()
