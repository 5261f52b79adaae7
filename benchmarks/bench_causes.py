"""Risk and cause per order against the order world's truth, over seeds and training sizes.

For each seed and training size: ``simulate(TRAIN, seed)`` (realistic world, randomised) trains
the default model (``train_uplift``, the risk model beside it); ``simulate(FRESH, seed + 1000)``
are fresh orders the model never saw. On the fresh orders: the expected calibration error of
the predicted risk (10 equal-count bins) against the truth's probability of cancelling under
control and against the control orders' outcomes; and the share of orders whose ``cause`` is
the truth's ``true_cause``, among the orders above the median predicted risk (the ones a CX
lead looks at) and among all.

Speed: on 1,000,000 orders, inside one process (imports and reading excluded), the work of
``uplift rank --model-dir`` without the risk (predicting the effects, allocating, explaining
the arms) against the risk's (``predict_risk`` and adding its columns to the queue).

    .venv/bin/python benchmarks/bench_causes.py [--seeds 5] [--sizes 20000 60000 200000]

Writes ``benchmarks/results/causes.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_models import RESULTS, machine, markdown

from uplift.data.files import atomic_path
from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.models import train_uplift
from uplift.models.calibration import expected_calibration_error, reliability
from uplift.policy.ranking import explain_queue, order_ids, rank_orders, with_risk


def calibration_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """Expected calibration error over equal-count bins of ``predicted``."""
    return expected_calibration_error(reliability(predicted, target.astype(float)))


def one_seed(seed: int, train: int, fresh: int) -> dict[str, float]:
    log = ExperimentLog.from_frame(simulate(train, seed=seed).log)
    start = time.perf_counter()
    model = train_uplift(log, seed=seed)
    seconds = time.perf_counter() - start
    world = simulate(fresh, seed=seed + 1000)
    risk = model.predict_risk(world.log)
    truth = world.truth.set_index("order_id").loc[world.log["order_id"]]
    above = (risk["risk"] >= risk["risk"].median()).to_numpy()
    agree = risk["cause"].to_numpy() == truth["true_cause"].to_numpy()
    control = (world.log["arm"] == "control").to_numpy()
    predicted = risk["risk"].to_numpy()
    return {
        "seed": seed,
        "training orders": train,
        "learner": model.learner,
        "train seconds": seconds,
        "ECE vs true probability": calibration_error(
            predicted, truth["p_cancel_control"].to_numpy()
        ),
        "ECE vs control outcomes": calibration_error(
            predicted[control], world.log["cancelled"].to_numpy()[control]
        ),
        "cause agrees, above-median risk": float(agree[above].mean()),
        "cause agrees, all orders": float(agree.mean()),
        "mean risk": float(predicted.mean()),
        "true mean": float(truth["p_cancel_control"].mean()),
    }


def speed(orders: int) -> dict[str, float]:
    """Seconds of rank's work without the risk, and of the risk, on ``orders`` fresh orders."""
    model = train_uplift(ExperimentLog.from_frame(simulate(60_000, seed=0).log), seed=0)
    frame = simulate(orders, seed=77, first_order_id=10_000_000).log
    model.predict_risk(frame.head(1_000))  # loads the compiled evaluator, as every command does
    start = time.perf_counter()
    effects = model.predict_effects(frame).with_order_ids(frame["order_id"])
    assignment = rank_orders(effects, holdout=0.1)
    queue = explain_queue(assignment, frame[list(model.features)], effects)
    ranked = time.perf_counter() - start
    start = time.perf_counter()
    with_risk(queue, model.predict_risk(frame), order_ids(effects))
    risk = time.perf_counter() - start
    return {"orders": orders, "rank's work s": ranked, "risk s": risk, "risk / rank": risk / ranked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 200_000])
    parser.add_argument("--fresh", type=int, default=100_000)
    parser.add_argument("--speed-orders", type=int, default=1_000_000)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the simulator's logs have no surprises worth printing
    start = time.perf_counter()
    runs = pd.DataFrame([one_seed(s, n, args.fresh) for n in args.sizes for s in range(args.seeds)])
    numbers = runs.select_dtypes("number").drop(columns="seed")
    grouped = numbers.groupby("training orders")
    summary = (
        grouped.mean().add_suffix(" mean").join(grouped.std(ddof=1).add_suffix(" sd"))
    ).reset_index()
    summary = summary[["training orders", *sorted(summary.columns[1:], key=_measure_order)]]
    timing = pd.DataFrame([speed(args.speed_orders)])
    text = "\n\n".join(
        [
            "# Risk and cause per order against the truth",
            f"Command: `.venv/bin/python benchmarks/bench_causes.py --seeds {args.seeds} "
            f"--sizes {' '.join(map(str, args.sizes))} --fresh {args.fresh}` (generated file; "
            f"{time.perf_counter() - start:.0f} s wall clock).",
            machine(),
            __doc__.split("\n\n    .venv")[0].split("\n\n", 1)[1].strip(),
            "Over the seeds (mean and standard deviation), per training size:",
            markdown(summary, digits=4),
            "Speed (seconds, one process):",
            markdown(timing, digits=3),
            "Per seed:",
            markdown(runs, digits=4),
        ]
    )
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.results / "causes.md") as tmp:
        tmp.write_text(text + "\n")


def _measure_order(column: str) -> tuple[str, str]:
    """Mean beside sd of the same measure."""
    return (column.rsplit(" ", 1)[0], column.rsplit(" ", 1)[1])


if __name__ == "__main__":
    main()
