"""How much of the oracle's net value could a learner keep, and where do generic learners lose it?

The simulator knows the form of every effect: each arm acts through a few terms of the order's
signals (payment rescue on a fixable payment status, expediting on delay times stock, ...; see
``uplift.data.simulate._arm_effects``). A logistic model of the retained outcome on the arms and
exactly those terms, with free coefficients and no penalty, is the best a learner could hope
for; replacing either part with the generic design of our linear S-learner (standardised
numbers and one 0/1 column per category level, every one of them interacted with every arm)
shows which part the generic learners lose on:

* ``simulator's terms``: the simulator's baseline terms and, per arm, its effect terms;
* ``generic baseline``: the generic columns for the baseline, the simulator's effect terms;
* ``generic effects``: the simulator's baseline terms, every generic column x every arm;
* ``generic``: the generic columns for both (our ``s_linear`` without its penalty).

Each model is fitted on the grid's training log and scored, as the grid scores learners, by the
true share of the oracle's net value of its policy on the grid's fresh test orders. The terms
assume a world whose signals the shop sees (``easy`` and ``easy-0.2``): an unseen stock level
is filled with the log's mean.

    .venv/bin/python benchmarks/bench_ceiling.py [--grid-seeds 5] [--grid-cells easy-0.2:200000]

Writes ``benchmarks/results/ceiling.md`` and ``ceiling.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from bench_models import (
    GRID_WORLDS,
    SCALED,
    OrderTask,
    grid_parser,
    markdown,
    over_grid,
    results_head,
    spread_by_cell,
    write_grid_results,
)
from sklearn.linear_model import LogisticRegression

from uplift.data import simulate as sim

NUMBERS = (
    "dispatch_delay_days",
    "stock_confidence",
    "order_edits",
    "support_contacts",
    "prior_orders",
    "hour",
    "order_value",
)
LEVELS = (
    "payment_method",
    "payment_status",
    "serviceability",
    "customer_tenure",
    "category",
    "device",
)
MODELS = {
    "simulator's terms": ("terms", "terms"),
    "generic baseline": ("generic", "terms"),
    "generic effects": ("terms", "generic"),
    "generic": ("generic", "generic"),
}
# Practically no penalty (sklearn's C); the columns are few against 200,000 orders.
UNPENALISED = 1e6


class Columns:
    """The two designs' columns of a frame of orders, with the training log's fill and scales."""

    def __init__(self, train: pd.DataFrame, world: sim.World) -> None:
        self.mean = {c: float(train[c].astype(float).mean()) for c in NUMBERS}
        self.sd = {c: float(train[c].astype(float).std()) for c in NUMBERS}
        self.levels = {c: sorted(train[c].dropna().unique())[1:] for c in LEVELS}
        self.smooth = world.smooth

    def generic(self, frame: pd.DataFrame) -> np.ndarray:
        columns = [
            ((frame[c].astype(float).fillna(self.mean[c]) - self.mean[c]) / self.sd[c]).to_numpy()
            for c in NUMBERS
        ]
        for c in LEVELS:
            columns += [(frame[c] == level).to_numpy(float) for level in self.levels[c]]
        return np.column_stack(columns)

    def terms(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The simulator's baseline terms and, per treatment arm, its effect terms."""
        x = self._signals(frame)
        c = sim._causes(x)
        s = sim._smooth_signals(x) if self.smooth else sim._step_signals(x)
        baseline = [c[k] for k in ("payment", "stock", "delay", "service", "doubt")]
        baseline += [(x["category"] == k).astype(float) for k in range(1, len(sim.CATEGORIES))]
        baseline.append(np.minimum(x["prior_orders"], sim._LOYALTY_CAP))
        fixable = np.isin(x["status"], sim._FIXABLE_STATUS)
        effects = {
            "reassurance": [c["doubt"] * s["evening"] * s["value"]],
            "expedite": [c["delay"] * s["in_stock"]],
            "payment_rescue": [c["payment"] * fixable * s["value"]],
            "delivery_update": [
                c["delay"] * s["moderate_delay"],
                s["long_delay"],
                (x["service"] == sim._REMOTE).astype(float),
            ],
            "agent_call": [c["service"], c["doubt"] * s["large"], s["loyal"]],
        }
        return np.column_stack(baseline), {a: np.column_stack(t) for a, t in effects.items()}

    def design(self, frame: pd.DataFrame, arm: np.ndarray, kinds: tuple[str, str]) -> np.ndarray:
        generic = self.generic(frame)
        baseline, effects = self.terms(frame)
        columns = [generic if kinds[0] == "generic" else baseline]
        for a in sim.TREATMENT_ARMS:
            treated = (arm == a).astype(float)[:, None]
            columns += [treated, treated * (generic if kinds[1] == "generic" else effects[a])]
        return np.hstack(columns)

    def _signals(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The simulator's internal names for the log's columns."""

        def codes(column: str, levels: tuple[str, ...]) -> np.ndarray:
            return frame[column].map({v: i for i, v in enumerate(levels)}).to_numpy()

        def number(column: str) -> np.ndarray:
            return frame[column].astype(float).fillna(self.mean[column]).to_numpy()

        return {
            "status": codes("payment_status", sim.PAYMENT_STATUSES),
            "stock": number("stock_confidence"),
            "delay": number("dispatch_delay_days"),
            "service": codes("serviceability", sim.SERVICEABILITY),
            "edits": number("order_edits"),
            "contacts": number("support_contacts"),
            "first": (frame["customer_tenure"] == "first_order").to_numpy(),
            "prior_orders": number("prior_orders"),
            "category": codes("category", sim.CATEGORIES),
            "hour": number("hour"),
            "order_value": number("order_value"),
        }


def predicted_uplift(
    model: LogisticRegression, columns: Columns, test: pd.DataFrame, kinds: tuple[str, str]
) -> pd.DataFrame:
    """Retained probability under each treatment arm minus under control, per test order."""

    def retained(arm: str) -> np.ndarray:
        design = columns.design(test, np.full(len(test), arm), kinds)
        return model.predict_proba(design)[:, 1]

    control = retained(sim.CONTROL)
    return pd.DataFrame({a: retained(a) - control for a in sim.TREATMENT_ARMS}, index=test.index)


def cell(world: str, orders: int, seed: int, test_orders: int) -> dict[str, Any]:
    spec = GRID_WORLDS[world]
    task = OrderTask.of_grid(world, orders, seed, test_orders)
    train, test = task.train.frame, task.test.frame
    columns = Columns(train, spec)
    row: dict[str, Any] = {"world": world, "orders": orders, "seed": seed}
    for name, kinds in MODELS.items():
        model = LogisticRegression(C=UNPENALISED, max_iter=5000)
        model.fit(columns.design(train, train["arm"].to_numpy(), kinds), train["retained"])
        uplift = predicted_uplift(model, columns, test, kinds)
        row[name] = task.share(uplift)
    return row


def main(argv: Sequence[str] | None = None) -> None:
    args = grid_parser(__doc__.splitlines()[0], f"{SCALED.name}:200000").parse_args(argv)
    started = time.time()
    frame = over_grid(args, cell)
    summary = spread_by_cell(frame, list(MODELS), 1).reset_index()
    text = "\n\n".join(
        [
            *results_head("The ceiling: a logistic model with the simulator's own terms", started),
            "\n\n".join(__doc__.split("\n\n")[1:4]),
            "True share (%) of the oracle's net value per seed:",
            markdown(frame.round(1)),
            "Mean over seeds (min to max):",
            markdown(summary),
        ]
    )
    write_grid_results(args, "ceiling", text, frame)


if __name__ == "__main__":
    main()
