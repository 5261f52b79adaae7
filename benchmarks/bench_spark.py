"""pandas against Spark (local, this machine's cores) on 5,000,000 orders: predict and rank.

Each command runs as a user runs it, in a fresh process: ``uplift predict`` and ``uplift rank
--effects`` (the allocation with two binding capacities, from the effects the pandas predict
wrote), once with the pandas engine and once with ``--engine spark --spark-master local[N]``.
Every run is measured twice: on 10,000 orders (the fixed cost: start-up, imports, the JVM) and
on the full orders; the difference gives the marginal throughput that the capacity plan
(``benchmarks/capacity-plan.md``) scales up.

Memory: the peak RSS of the command's own process (``/usr/bin/time -f %M``: the child's
``ru_maxrss``, what ``getrusage(RUSAGE_CHILDREN)`` reports), and the peak of the summed RSS of
its whole process tree sampled every 0.2 s (for Spark: the Python driver, the JVM and the
executors' Python workers; shared pages are counted once per process, so the sum errs high).

The machine is shared: before each run the script waits (up to ``--wait`` seconds) for the
one-minute load average to fall below ``--max-load`` and records the load each run met.

    .venv/bin/python benchmarks/bench_spark.py [--orders 5000000] [--cores 2]

Writes ``benchmarks/results/spark.md`` (``--results DIR`` writes it elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from bench_commands import binding_capacities
from bench_models import RESULTS, markdown

from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARM_COSTS, pending_orders, simulate
from uplift.models import save_model, train_uplift

UPLIFT = str(Path(sys.executable).with_name("uplift"))
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != "control"}
COST_FLAGS = [f"--cost={arm}={cost:g}" for arm, cost in COSTS.items()]
SMALL = 10_000
BASE_ORDERS = 1_000_000  # simulated once, then copied with new ids and jittered values


def machine(cores: int) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return {
        "uname -m": platform.machine(),
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "Java": _java_version(),
        "Spark": _version("pyspark"),
        "Spark master": f"local[{cores}]",
    }


def _version(name: str) -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only here

    return version(name)


def _java_version() -> str:
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).splitlines()[0] if (done.stderr or done.stdout) else "?"


def wait_for_quiet(max_load: float, wait: float) -> float:
    """Wait until the one-minute load average is below ``max_load`` (or ``wait`` seconds)."""
    deadline = time.time() + wait
    while os.getloadavg()[0] >= max_load and time.time() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def tree_rss(root: psutil.Process) -> int:
    """Summed RSS (bytes) of ``root`` and every process below it."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run(argv: Sequence[str | Path], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``argv`` under ``/usr/bin/time``: wall seconds, the command's own peak RSS (time's
    ``%M``, the child's ru_maxrss) and the peak summed RSS of its process tree (MB)."""
    with tempfile.NamedTemporaryFile("w+", suffix=".time") as timing:
        command = ["/usr/bin/time", "-f", "%M", "-o", timing.name, *map(str, argv)]
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen(
                command, stdout=out, stderr=err, env={**os.environ, **(env or {})}
            )
            peak = [0]
            done = threading.Event()

            def sample() -> None:
                try:
                    root = psutil.Process(child.pid)
                    while not done.is_set():
                        peak[0] = max(peak[0], tree_rss(root))
                        time.sleep(0.2)
                except psutil.NoSuchProcess:
                    return

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            code = child.wait()
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
            if code != 0:
                err.seek(0)
                raise RuntimeError(
                    f"{' '.join(map(str, argv))} failed: {err.read().strip()[-800:]}"
                )
        own_kb = float(Path(timing.name).read_text().split()[-1])
    return {"seconds": seconds, "own MB": own_kb / 1024, "tree MB": peak[0] / 2**20}


def orders_file(path: Path, orders: int, seed: int) -> None:
    """``orders`` pending orders: a simulated million, copied with new ids and order values
    jittered by up to 10% (so that copies do not tie), in row groups of 250,000."""
    base = pending_orders(simulate(min(orders, BASE_ORDERS), weeks=1, seed=seed).log)
    rng = np.random.default_rng(seed)
    parts = []
    for copy in range(-(-orders // len(base))):
        part = base.copy()
        part["order_id"] = part["order_id"] + copy * 10**8
        part["order_value"] = part["order_value"] * rng.uniform(0.9, 1.1, len(part))
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True).iloc[:orders]
    frame.to_parquet(path, index=False, row_group_size=250_000)


def train(folder: Path) -> Path:
    """A t_lgbm model with its risk model, trained on 200,000 simulated orders."""
    log = ExperimentLog.from_frame(simulate(200_000, weeks=2, seed=1).log)
    model = train_uplift(log, learner="t_lgbm", validate=False, costs=COSTS)
    return save_model(model, folder / "model")


def spark_flags(cores: int) -> list[str]:
    return ["--engine", "spark", "--spark-master", f"local[{cores}]"]


def measure_size(
    folder: Path, size: str, orders: Path, count: int, model: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """predict and rank, pandas then Spark, on one orders file: a row per run."""
    spark = spark_flags(args.cores)
    effects = folder / f"effects-{size}.parquet"
    runs: list[tuple[str, str, list[str | Path]]] = [
        ("predict", "pandas", ["predict", orders, "--model-dir", model, "--out", effects]),
        (
            "predict",
            "spark",
            [
                "predict",
                orders,
                "--model-dir",
                model,
                "--out",
                folder / f"effects-{size}-spark",
                *spark,
            ],
        ),
    ]
    rows = [measured(command, engine, count, argv, args) for command, engine, argv in runs]
    capacity = [f"--capacity={a}={n}" for a, n in binding_capacities(effects).items()]
    rank = ["rank", orders, "--effects", effects, *COST_FLAGS, *capacity]
    for engine, extra in (("pandas", []), ("spark", spark)):
        queue = folder / f"queue-{size}-{engine}{'.parquet' if engine == 'pandas' else ''}"
        summary = folder / f"queue-{size}-{engine}.json"
        row = measured(
            "rank", engine, count, [*rank, "--out", queue, "--json", summary, *extra], args
        )
        written = json.loads(summary.read_text())
        row["objective"] = written["objective"]
        if "certificate" in written:  # the Spark engine says how it found the prices
            found = written["certificate"]
            row["note"] = (
                f"{found['rounds']} round(s); {found['marginal_orders']:,} orders near the "
                "prices solved on the driver"
            )
        rows.append(row)
    return rows


def measured(
    command: str, engine: str, count: int, argv: list[str | Path], args: argparse.Namespace
) -> dict[str, Any]:
    load = wait_for_quiet(args.max_load, args.wait)
    print(f"  {command} {engine} {count:,} orders (load {load:.2f}) ...", file=sys.stderr)
    return {
        "command": command,
        "engine": engine,
        "orders": count,
        "load at start": load,
        **run([UPLIFT, *argv]),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--wait", type=float, default=60.0)
    parser.add_argument("--results", default=str(RESULTS), help="folder of spark.md")
    args = parser.parse_args(argv)
    started, when = time.time(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        folder = Path(tmp)
        print("  training the model, writing the orders ...", file=sys.stderr, flush=True)
        model = train(folder)
        for size, count in (("small", SMALL), ("full", args.orders)):
            path = folder / f"orders-{size}.parquet"
            orders_file(path, count, seed=11)
            rows += measure_size(folder, size, path, count, model, args)
    table = pd.DataFrame(rows)
    write(table, args, when, load_start, time.time() - started)


def throughput(table: pd.DataFrame, cores: int) -> pd.DataFrame:
    """Per command and engine: fixed seconds, marginal orders per second (total and per
    core), and the marginal memory per million orders, from the small and the full run."""
    out = []
    for (command, engine), runs in table.groupby(["command", "engine"], sort=False):
        small, full = runs.iloc[0], runs.iloc[-1]
        extra = full["orders"] - small["orders"]
        rate = extra / (full["seconds"] - small["seconds"])
        out.append(
            {
                "command": command,
                "engine": engine,
                "fixed s": small["seconds"],
                "orders/s": rate,
                "orders/s per core": rate / cores,
                "tree MB per 1M orders": (full["tree MB"] - small["tree MB"]) / extra * 1e6,
            }
        )
    return pd.DataFrame(out)


def write(
    table: pd.DataFrame,
    args: argparse.Namespace,
    when: str,
    load_start: tuple[float, float, float],
    elapsed: float,
) -> None:
    facts = machine(args.cores)
    rates = throughput(table, args.cores)
    lines = [
        f"# pandas against Spark local: predict and rank on {args.orders:,} orders",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_spark.py --orders {args.orders} "
        f"--cores {args.cores}` (generated file; {elapsed:.0f} s wall clock, {when}).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()) + f"; load average at "
        f"start {', '.join(f'{x:.2f}' for x in load_start)}, at the end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (the cores are shared with other "
        f"engineers; each run waited up to {args.wait:.0f} s for a one-minute load below "
        f"{args.max_load:g}, and the table gives the load it met).",
        "",
        "Orders: a simulated million (`simulate(1_000_000, weeks=1, seed=11)`, pending "
        "columns) copied with new ids and order values jittered by up to 10%, in one Parquet "
        "file of row groups of 250,000; a t_lgbm model with its risk model trained on 200,000 "
        "simulated orders. `predict` writes the effects (and risk, cause); `rank --effects` "
        "ranks the pandas engine's effects file with the simulator's costs and two capacities "
        "that bind (half the orders wanting each of the two most wanted arms). Every command "
        "is a fresh process (`uplift ...`, as a user runs it). `own MB`: the command's process "
        "peak RSS (`/usr/bin/time -f %M`); `tree MB`: the peak of the summed RSS of its process "
        "tree (Spark: Python driver, JVM, Python workers), sampled every 0.2 s.",
        "",
        markdown(table, digits=4),
        "",
        "## Fixed cost and marginal throughput",
        "",
        f"From the {SMALL:,}-order run (the fixed cost: start-up, imports, the JVM) and the "
        f"full run: orders per second = (full orders - {SMALL:,}) / (full seconds - small "
        f"seconds), per core = that / {args.cores}; memory per million orders likewise from "
        "the tree's peak.",
        "",
        markdown(rates, digits=4),
    ]
    target = Path(args.results) / "spark.md"
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
