"""Whole commands on 1,000,000 orders x 6 arms, each in a fresh process, against causalml.

Times ``uplift train`` (``--learner t_lgbm``, the default ``auto`` and ``--learner s_blend``),
``uplift predict`` with each model, ``uplift rank --model-dir`` (the ``auto`` model) with
two binding capacities and ``uplift evaluate`` (the ``auto`` model, on the same orders) as a
user runs them: a new process
that imports the package, reads the log, works and writes its files. Each row gives the wall
seconds and the peak RSS of that process (predict and rank: the median of three runs and the
largest peak). In the same run, in fresh processes too:

* causalml's ``BaseTClassifier`` with LightGBM outcome models of our settings (75 trees of 7
  leaves, rate 0.1, the same leaf size and threads), fitted and predicting inside one process
  on the same orders (import and reading excluded), and our commands' ratios to it: ``--pairs``
  times, ours and causalml's in turn (which of the two goes first alternates), so that a change
  of the shared machine's load falls on both; the ratio quoted is the median of the pairs';
* ``predict_effects`` inside one process, with our tree evaluator and with LightGBM's
  ``predict`` (the fallback, which is how predictions were made before the evaluator);
* numba's first-call cost: compiling the evaluator (an empty cache) and loading it from the
  cache beside the package.

    .venv/bin/python benchmarks/bench_commands.py [--orders 1000000] [--pairs 3]

Writes ``benchmarks/results/commands.md`` (``--results DIR`` writes it elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_models import RESULTS, machine, markdown, speed_log
from peak import timed as peak_timed

from uplift.data.files import atomic_path
from uplift.data.simulate import ARM_COSTS
from uplift.models.effects import Effects

UPLIFT = str(Path(sys.executable).with_name("uplift"))
#: Runs of each predict and rank command (a few seconds each): one run moves by tens of
#: percent with the machine, so their row gives the median.
RUNS = 3
#: The label of the model trained with ``--learner s_blend --no-validate``.
BLEND = "s_blend, named"
COSTS = [f"{arm}={cost:g}" for arm, cost in ARM_COSTS.items() if arm != "control"]


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``argv`` in a new process: wall seconds, its own peak RSS in MB, stdout."""
    seconds, peak, out, err, code = peak_timed(argv, env)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err.strip()[-500:]}")
    return seconds, peak, out


def commands(folder: Path, log: Path) -> list[dict[str, Any]]:
    """Run every command once; a row per command."""
    t_model, auto_model, blend_model = folder / "t_lgbm", folder / "auto", folder / "s_blend"
    costs = [f"--cost={c}" for c in COSTS]
    t_train = ["train", log, "--learner", "t_lgbm", *costs]
    blend_train = ["train", log, "--learner", "s_blend", *costs, "--no-validate"]
    rows = [
        row("uplift train --learner t_lgbm --no-validate", [*t_train, "--no-validate"], t_model),
        row("uplift train --learner t_lgbm (validated)", t_train, folder / "t_validated"),
        row("uplift train (auto)", ["train", log, *costs], auto_model),
    ]
    learner = json.loads((auto_model / "model_card.json").read_text())["learner"]
    rows[-1]["note"] = f"chose {learner}"
    rows.append(row("uplift train --learner s_blend --no-validate", blend_train, blend_model))
    predicted = {}
    for model, name in ((t_model, "t_lgbm"), (auto_model, learner), (blend_model, BLEND)):
        predicted[name] = folder / f"effects-{name}.parquet"
        argv = ["predict", log, "--out", predicted[name]]
        rows.append(row(f"uplift predict ({name})", argv, model, RUNS))
    capacity = binding_capacities(predicted[learner])
    queue, summary = folder / "queue.parquet", folder / "rank.json"
    argv = ["rank", log, "--out", queue, "--json", summary]
    argv += [f"--capacity={arm}={n}" for arm, n in capacity.items()]
    rows.append(row(f"uplift rank --model-dir ({learner})", argv, auto_model, RUNS))
    prices = pd.DataFrame(json.loads(summary.read_text())["summary"]).set_index("arm")
    rows[-1]["note"] += "; " + ", ".join(
        f"{arm}={n:,} (shadow price {prices.loc[arm, 'shadow_price']:.3g})"
        for arm, n in capacity.items()
    )
    argv = ["evaluate", log, "--json", folder / "evaluation.json"]
    rows.append(row(f"uplift evaluate ({learner})", argv, auto_model))
    return rows


def against_causalml(folder: Path, log: Path, pair: int) -> dict[str, Any]:
    """Our t_lgbm train and predict commands and causalml's in-process T-learner, in turn."""

    def ours() -> dict[str, float]:
        model, costs = folder / f"t_lgbm-{pair}", [f"--cost={c}" for c in COSTS]
        argv = ["train", log, "--learner", "t_lgbm", *costs, "--no-validate"]
        train = row("uplift train --learner t_lgbm --no-validate", argv, model)
        out = folder / f"effects-t_lgbm-{pair}.parquet"
        predict = row("uplift predict (t_lgbm)", ["predict", log, "--out", out], model)
        return {"our train s": train["seconds"], "our predict s": predict["seconds"]}

    def theirs() -> dict[str, float]:
        causal = measure("causalml", log)
        return {
            "causalml train s": causal["fit s"],
            "causalml predict s": causal["predict s"],
            "causalml peak MB": causal["peak"],
        }

    if pair % 2 == 0:
        return {"pair": pair + 1, "first": "ours", **ours(), **theirs()}
    return {"pair": pair + 1, "first": "causalml", **theirs(), **ours()}


def binding_capacities(path: Path) -> dict[str, int]:
    """Capacities that bind: half the orders that want each of the two most wanted arms.

    An order wants the arm of its highest net value at the simulator's costs (as rank picks
    without capacities), as predicted in the effects file ``path``.
    """
    effects = Effects.from_frame(pd.read_parquet(path))
    costs = {arm: c for arm, c in ARM_COSTS.items() if arm != "control"}
    wanted = pd.Series(effects.best_arm(costs)).value_counts().drop(effects.control)
    return {str(arm): int(n) // 2 for arm, n in wanted.head(2).items()}


def row(label: str, argv: Sequence[str | Path], model: Path, runs: int = 1) -> dict[str, Any]:
    """One command's row: wall seconds (the median of ``runs`` runs, their range in the note)
    and the largest peak RSS."""
    print(f"  {label} ...", file=sys.stderr, flush=True)
    done = [timed([UPLIFT, *map(str, argv), "--model-dir", str(model)]) for _ in range(runs)]
    seconds = sorted(s for s, _, _ in done)
    out = {"command": label, "seconds": float(np.median(seconds))}
    out["peak RSS MB"] = max(peak for _, peak, _ in done)
    if runs > 1:
        out["note"] = f"median of {runs} runs ({seconds[0]:.3g} to {seconds[-1]:.3g} s)"
    return out


def worker(kind: str, log: Path, model: Path | None) -> dict[str, Any]:
    """Measurements made inside a process (run by ``--worker``): one JSON line."""
    if kind == "causalml":
        return causalml_t(log)
    if kind == "in-process":
        return in_process(log, Path(str(model)))
    return first_call(log, Path(str(model)))


def causalml_t(path: Path) -> dict[str, Any]:
    """causalml's BaseTClassifier with our trees, fitted and predicting on the whole log."""
    from causalml.inference.meta import BaseTClassifier  # noqa: PLC0415 - seconds to import; only this worker needs it
    from lightgbm import LGBMClassifier  # noqa: PLC0415 - as above

    from uplift.data.log import read_log  # noqa: PLC0415 - the worker's own imports
    from uplift.models.base import FeatureEncoder  # noqa: PLC0415
    from uplift.models.causalml_adapters import quiet_third_party  # noqa: PLC0415
    from uplift.models.learners import (  # noqa: PLC0415
        LEARNING_RATE,
        MIN_CHILD_SAMPLES,
        N_ESTIMATORS,
        N_JOBS,
        NUM_LEAVES,
        predict_threads,
    )
    from uplift.models.uplift_model import model_inputs  # noqa: PLC0415

    log = read_log(path)
    X = log.frame[list(model_inputs(log))]
    encoder = FeatureEncoder().fit(X)
    matrix = encoder.to_numpy(encoder.transform(X))  # how our causalml adapters feed it
    learner = LGBMClassifier(
        n_estimators=N_ESTIMATORS,
        learning_rate=LEARNING_RATE,
        num_leaves=NUM_LEAVES,
        min_child_samples=MIN_CHILD_SAMPLES,
        n_jobs=N_JOBS,
        random_state=0,
        verbose=-1,
    )
    model = BaseTClassifier(learner=learner, control_name=log.control)
    with quiet_third_party():
        start = time.perf_counter()
        model.fit(X=matrix, treatment=log.frame["arm"].to_numpy(), y=log.frame["retained"])
        fit = time.perf_counter() - start
        for fitted in [*model.models_c.values(), *model.models_t.values()]:
            fitted.set_params(n_jobs=predict_threads())  # our prediction threads
        start = time.perf_counter()
        model.predict(X=matrix)
        predict = time.perf_counter() - start
    return {"fit s": fit, "predict s": predict}


def in_process(path: Path, folder: Path) -> dict[str, Any]:
    """``predict_effects`` of a saved model: our evaluator, then LightGBM's predict."""
    from uplift.data.log import read_frame  # noqa: PLC0415 - the worker's own imports
    from uplift.experiment.metrics import (  # noqa: PLC0415
        QINI_RESAMPLES,
        uplift_metrics_by_arm,
    )
    from uplift.models import load_model, trees  # noqa: PLC0415

    model = load_model(folder)
    frame = read_frame(path)
    model.predict_effects(frame.head(1000))  # numba's cache is loaded once per process
    seconds = {}
    for path_name in ("evaluator", "lightgbm"):
        if path_name == "lightgbm":
            trees.compiled = lambda: None  # what predicts without numba
        start = time.perf_counter()
        effects = model.predict_effects(frame)
        seconds[path_name] = time.perf_counter() - start
        seconds[f"{path_name} sum"] = float(np.nansum(effects.to_frame().to_numpy(np.float64)))
    uplift = effects.uplift("retained").set_axis(frame.index)
    for key, resamples in (("metrics", 0), ("metrics with intervals", QINI_RESAMPLES)):
        start = time.perf_counter()
        uplift_metrics_by_arm(uplift, frame, control=model.control, resamples=resamples)
        seconds[key] = time.perf_counter() - start
    return seconds


def first_call(path: Path, folder: Path) -> dict[str, Any]:
    """Seconds of the first prediction of a process beyond those of the second."""
    from uplift.data.log import read_frame  # noqa: PLC0415 - the worker's own imports
    from uplift.models import load_model  # noqa: PLC0415

    model = load_model(folder)
    frame = read_frame(path).head(1000)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model.predict_effects(frame)
        times.append(time.perf_counter() - start)
    return {"first s": times[0], "second s": times[1]}


def measure(kind: str, log: Path, model: Path | None = None, **env: str) -> dict[str, Any]:
    print(f"  {kind} ...", file=sys.stderr, flush=True)
    argv = [sys.executable, __file__, "--worker", kind, str(log), str(model or "")]
    seconds, peak, stdout = timed(argv, env)
    return {**json.loads(stdout.strip().splitlines()[-1]), "process s": seconds, "peak": peak}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3, help="ours / causalml runs in turn")
    parser.add_argument("--results", default=str(RESULTS), help="folder of commands.md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, log, model = args.worker
        print(json.dumps(worker(kind, Path(log), Path(model) if model else None)))
        return
    started = time.time()
    header = [machine()]  # the machine and its load before the runs
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        folder = Path(tmp)
        log = folder / "log.parquet"
        print("  simulating the log ...", file=sys.stderr, flush=True)
        speed_log(args.orders).frame.to_parquet(log, index=False)
        rows = commands(folder, log)
        pairs = [against_causalml(folder, log, i) for i in range(args.pairs)]
        inside = {name: measure("in-process", log, folder / name) for name in ("t_lgbm", "auto")}
        compiled = measure("first-call", log, folder / "t_lgbm", NUMBA_CACHE_DIR=str(folder / "nc"))
        cached = measure("first-call", log, folder / "t_lgbm")
    table = pd.DataFrame(rows)
    causal_peak = max(p.pop("causalml peak MB") for p in pairs)
    steps = ("our train s", "causalml train s", "our predict s", "causalml predict s")
    ratios = pd.DataFrame(pairs)[["pair", "first", *steps]]
    for step in ("train", "predict"):
        ratios[f"{step} ratio"] = ratios[f"our {step} s"] / ratios[f"causalml {step} s"]
    median = ratios.drop(columns=["pair", "first"]).median()
    ratios = pd.concat([ratios, pd.DataFrame([{"pair": "median", **median}])], ignore_index=True)
    learner = table["note"].dropna().iloc[0].removeprefix("chose ")
    report(
        args,
        started,
        header,
        [
            f"`speed_log({args.orders:,})` of `bench_models.py` (`simulate(orders, seed=11)` plus "
            "7 noise columns: 20 inputs, 6 arms, retained outcome, logged propensities) written "
            "to Parquet; every command reads that file (predict and rank score all its orders). "
            f"Train gets the simulator's arm costs ({', '.join(COSTS)}); rank uses them (from "
            "the model card of the auto model) with two capacities that bind: half the orders "
            "whose best arm (predicted net value) is each of the two most wanted arms. "
            f"`{BLEND}` is the model of `--learner s_blend --no-validate` (the blend of the "
            "bagged S-learner and the linear S-learner). Each run is a fresh "
            "process: wall seconds of the whole command (start, imports, reading, work, "
            "writing) and the peak RSS of that process (`wait4` ru_maxrss, read by a small "
            "launcher: Linux carries a parent's high-water mark into the child it starts). "
            f"Train runs once; predict and rank {RUNS} times in a row, their row giving the "
            "median seconds (the range in the note) and the largest peak.",
            markdown(table),
            "## Against causalml\n\ncausalml 0.18's `BaseTClassifier` with `LGBMClassifier` "
            "outcome models of our settings (75 trees, 7 leaves, rate 0.1, min_child_samples "
            "200, our fit threads; our prediction threads to predict), fitted on the whole log "
            "and predicting it inside one process: import, reading and encoding are not timed "
            f"(peak RSS up to {causal_peak:,.0f} MB). Ours: `train --learner t_lgbm "
            "--no-validate` (it fits and saves, as causalml's call fits; the validated train "
            "also scores the learner on three cross-fitted folds for its card) and `predict`, "
            "each a fresh process. Each pair runs ours and causalml's in turn, the first of "
            "them alternating; ratios are our whole command's seconds over causalml's "
            "in-process seconds (below 1 our command is faster), and the last row is the "
            "median of each column.",
            markdown(ratios),
            "## Prediction inside one process\n\n`model.predict_effects(log)` on all "
            f"{args.orders:,} orders, after a first call on 1,000 orders (which loads the "
            "compiled evaluator): with our evaluator, and with LightGBM's `Booster.predict` "
            "(the fallback without numba, which is how predictions were made before). The "
            "effects agree (the sums of all effects are equal).\n\n"
            + markdown(
                pd.DataFrame(
                    [
                        {
                            "model": f"{name} ({learner})" if name == "auto" else name,
                            "our evaluator s": inside[name]["evaluator"],
                            "LightGBM predict s": inside[name]["lightgbm"],
                            "sum of effects, ours": f"{inside[name]['evaluator sum']:.12g}",
                            "LightGBM's": f"{inside[name]['lightgbm sum']:.12g}",
                        }
                        for name in inside
                    ]
                )
            )
            + "\n\nThe ranking metrics of every arm on the same orders "
            "(`uplift_metrics_by_arm`, as `evaluate` and the weekly report compute them): "
            + "; ".join(
                f"{name} {inside[name]['metrics']:.2f} s without the Qini's intervals, "
                f"{inside[name]['metrics with intervals']:.2f} s with them (200 resamples each)"
                for name in inside
            )
            + ".",
            "## numba's first call\n\nThe first prediction of a process on 1,000 orders (t_lgbm "
            "model) less the second: "
            f"{compiled['first s'] - compiled['second s']:.2f} s with an empty cache (numba "
            "compiles the evaluator), "
            f"{cached['first s'] - cached['second s']:.2f} s with the cache beside the package "
            "(what every command pays).",
        ],
    )


def report(
    args: argparse.Namespace, started: float, header: list[str], sections: Sequence[str]
) -> None:
    """Print the results and write them to ``<results>/commands.md`` atomically."""
    command = ".venv/bin/python benchmarks/bench_commands.py " + " ".join(sys.argv[1:])
    text = "\n\n".join(
        [
            f"# Commands: {args.orders:,} orders x 6 arms x 20 inputs",
            f"Command: `{command.strip()}` (generated file; {time.time() - started:.0f} s "
            "wall clock).",
            *header,
            *sections,
        ]
    )
    print(text + "\n", flush=True)
    with atomic_path(Path(args.results) / "commands.md") as tmp:
        tmp.write_text(text + "\n")


if __name__ == "__main__":
    main()
