"""Risk and cause per order against the order world's truth, over several seeds.

For each seed: ``simulate(TRAIN, seed)`` (realistic world, randomised) trains the default model
(``train_uplift``, the risk model beside it); ``simulate(FRESH, seed + 1000)`` are fresh orders
the model never saw. On the fresh orders:

* **calibration**: the expected calibration error of the predicted risk against the truth's
  probability of cancelling under control (``p_cancel_control``; 10 equal-count bins of
  predicted risk, each bin's |mean predicted - mean true| weighted by its orders), and the same
  against the observed outcome of the control arm's orders;
* **cause agreement**: the share of orders whose ``cause`` equals the truth's ``true_cause``
  among the orders above the median predicted risk (the orders a CX lead looks at), and among
  all orders.

    .venv/bin/python benchmarks/bench_causes.py [--seeds 3] [--train 60000] [--fresh 100000]

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

BINS = 10


def calibration_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """Expected calibration error over equal-count bins of ``predicted``."""
    order = np.argsort(predicted, kind="stable")
    gaps = [
        len(part) * abs(predicted[part].mean() - target[part].mean())
        for part in np.array_split(order, BINS)
    ]
    return float(np.sum(gaps) / len(predicted))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--fresh", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the simulator's logs have no surprises worth printing
    start = time.perf_counter()
    runs = pd.DataFrame([one_seed(s, args.train, args.fresh) for s in range(args.seeds)])
    numbers = runs.select_dtypes("number").drop(columns="seed")
    summary = pd.DataFrame({"mean": numbers.mean(), "sd": numbers.std(ddof=1)}).reset_index()
    text = "\n\n".join(
        [
            "# Risk and cause per order against the truth",
            f"Command: `.venv/bin/python benchmarks/bench_causes.py --seeds {args.seeds} "
            f"--train {args.train} --fresh {args.fresh}` (generated file; "
            f"{time.perf_counter() - start:.0f} s wall clock).",
            f"Machine: {machine()}.",
            __doc__.split("\n\n")[1].strip(),
            "Per seed:",
            markdown(runs, digits=4),
            "Over the seeds (mean and standard deviation):",
            markdown(summary.rename(columns={"index": "measure"}), digits=4),
        ]
    )
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.results / "causes.md") as tmp:
        tmp.write_text(text + "\n")


if __name__ == "__main__":
    main()
