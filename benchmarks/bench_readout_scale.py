"""`uplift readout` and `uplift readout --adjust` on a 10,000,000-order simulated Parquet log.

Run from the repository root: ``.venv/bin/python benchmarks/bench_readout_scale.py [--orders N]``.
Simulates the log in chunks of a million orders (the realistic order world, 20 columns, 12
features), then runs each command in a fresh process and measures its wall time and peak
resident memory (``peak.timed``: the command's own high-water mark). Prints a markdown table headed
by the machine (``uname -m``, ``nproc``, CPU model), the date and the load average before and
after, and writes it to ``benchmarks/results/readout-scale.md`` (``--results DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from peak import timed

from uplift.data.simulate import simulate

UPLIFT = Path(sys.executable).with_name("uplift")
CHUNK = 1_000_000


def write_log(orders: int, path: Path) -> None:
    """A simulated log written one million orders at a time (memory stays near one chunk)."""
    writer = None
    for start in range(0, orders, CHUNK):
        size = min(CHUNK, orders - start)
        log = simulate(size, weeks=4, seed=100 + start // CHUNK, first_order_id=start + 1).log
        table = pa.Table.from_pandas(log, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema))
    assert writer is not None
    writer.close()


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one command in its own process."""
    seconds, peak, _, err, code = timed(argv)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip()[-500:]}")
    return seconds, peak / 1024


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "log.parquet"
        write_log(args.orders, log)
        load_before = os.getloadavg()
        for extra in ([], ["--adjust"], ["--segment", "payment_status"]):
            argv = [str(UPLIFT), "readout", str(log), *extra, "--json", f"{folder}/r.json"]
            seconds, peak = run(argv)
            rows.append((" ".join(["uplift readout LOG.parquet", *extra]), seconds, peak))
        load_after = os.getloadavg()
    lines = [
        f"# Readout of {args.orders:,} orders",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_readout_scale.py --orders {args.orders}` "
        f"({datetime.date.today()}).",
        "",
        f"Machine: `uname -m` {platform.machine()}, `nproc` {os.cpu_count()}, CPU {cpu_model()}; "
        f"Python {platform.python_version()}; load average before "
        f"{', '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{', '.join(f'{v:.2f}' for v in load_after)} (the two cores are shared: wall times "
        "move with the load).",
        "",
        "Log: `simulate(1_000_000, weeks=4, seed=100 + i)` x 10 chunks, 20 columns (12 features).",
        "Each command runs in a fresh process; peak RSS is the process's high-water mark.",
        "",
        "| command | wall s | peak RSS GB |",
        "|---|---|---|",
        *(f"| `{c}` | {s:.1f} | {p:.2f} |" for c, s, p in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "readout-scale.md").write_text(text)


if __name__ == "__main__":
    main()
