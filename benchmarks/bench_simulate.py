"""How long simulating a million orders takes, in Python and through the command line.

Run from the repository root: ``.venv/bin/python benchmarks/bench_simulate.py [--orders N]``.
Prints a markdown table: the machine, each command, wall-clock seconds and peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from uplift.data.files import write_table
from uplift.data.simulate import simulate

UPLIFT = Path(sys.executable).with_name("uplift")


def _peak_rss_mb(usage: resource.struct_rusage) -> float:
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / 1e6


Row = tuple[str, float, float, float]  # command, wall seconds, CPU seconds, peak RSS (MB)


def _cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def time_in_process(orders: int, folder: Path) -> Row:
    before = _cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
    start = time.perf_counter()
    world = simulate(orders, weeks=4, seed=0)
    write_table(world.log, folder / "py_log.parquet")
    write_table(world.truth, folder / "py_truth.parquet")
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    command = f"simulate({orders:_}, weeks=4) + write_table(log, truth) as parquet (in process)"
    return command, seconds, _cpu_seconds(usage) - before, _peak_rss_mb(usage)


def time_command(orders: int, out: Path) -> Row:
    """Run the real command line in a child process; wait4 gives that child's own peak memory."""
    argv = [str(UPLIFT), "simulate", "--orders", str(orders), "--weeks", "4", "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {child.returncode}")
    command = f"uplift simulate --orders {orders} --weeks 4 --out {out.name}"
    return command, seconds, _cpu_seconds(usage), _peak_rss_mb(usage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    orders = parser.parse_args().orders
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [
            time_command(orders, folder / "log.parquet"),
            time_command(orders, folder / "log.csv"),
            time_in_process(orders, folder),
        ]
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} "
        "(CPU seconds do not depend on other processes, wall seconds do)"
    )
    print(f"Machine: {machine}\n")
    print("| command | wall seconds | CPU seconds | peak RSS (MB) |")
    print("|---|---:|---:|---:|")
    for command, seconds, cpu, rss in rows:
        print(f"| `{command}` | {seconds:.1f} | {cpu:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
