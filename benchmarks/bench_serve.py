"""Latency and throughput of ``uplift serve``, driven over loopback from the same machine.

Builds a store in a temporary folder (one simulated week of ``--train-orders`` orders, the
weekly job's champion, an API key, the simulator's arm costs), starts ``uplift serve`` on
127.0.0.1 in a new process, and measures, each order new to the service (fresh ids):

* single orders at fixed rates (``--rates``, 200 and 50 requests/s, each for
  ``--seconds-per-phase``): latency from each request's scheduled start (so a server that
  falls behind shows it) to its answer, p50/p99; requests not answered a phase's length after
  the last was sent are counted, not timed;
* batches of 1,000 orders, one at a time (``--batches``): p50/p99;
* the most sustained throughput: ``--clients`` clients sending single orders back to back
  for the phase's seconds: answers per second, and their latency.

The same three phases run against the same HTTP application with a stub engine (it decides
``control`` for every order, no model) in a second process: the cost of the HTTP layer
(parsing, key check, metrics, JSON) apart from the model's.

    .venv/bin/python benchmarks/bench_serve.py [--rates 200,50] [--seconds-per-phase 10]

Writes ``benchmarks/results/serve.md`` (``--results DIR`` writes it elsewhere). Every phase is
bounded in requests and seconds; the whole run takes about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import uvicorn
from bench_models import RESULTS, machine, markdown

from uplift.data.files import atomic_path
from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.loop.store import Store
from uplift.loop.weekly import WeeklyConfig, WeeklyJob
from uplift.serve.app import make_app

OUTCOMES = ["arm", "cancelled", "revenue", "propensity", "delivered", "assigned_at"]
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
WEEK = "2026-W40"
BATCH = 1_000


# ------------------------------------------------------------------------------ the servers
def build_store(folder: Path, orders: int) -> tuple[Path, str, Path]:
    """A store with a champion trained on one simulated week, an API key, a project file."""
    store = Store(folder / "uplift.duckdb")
    world = simulate(orders, weeks=1, seed=1, world="realistic", start_week=WEEK)
    store.ingest(ExperimentLog.from_frame(world.log))
    WeeklyJob(WeeklyConfig(store=store.path, out=folder / "reports", costs=COSTS, segments=())).run(
        WEEK
    )
    key = store.create_key("bench")
    costs = ", ".join(f"{arm} = {cost}" for arm, cost in COSTS.items())
    project = folder / "uplift.toml"
    project.write_text(f"[arms]\ncosts = {{ {costs} }}\n")
    return store.path, key, project


def start(argv: Sequence[str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; its URL from the first line it prints."""
    with log.open("w") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r} {log.read_text()[-2000:]}")
    return process, f"http://127.0.0.1:{found[1]}"


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class StubEngine:
    """The engine's interface without a model: every order gets ``control``."""

    model_id = "stub"
    reload_error: str | None = None
    failed = False

    def __init__(self) -> None:
        self.decisions_by_arm: dict[str, int] = {}

    def decide(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "order_id": order["order_id"],
                "arm": CONTROL,
                "propensity": 1.0,
                "net_value": 0.0,
                "reason": "stub",
                "decision_id": f"stub-{order['order_id']}",
                "model_id": "stub",
                "risk": None,
                "cause": None,
            }
            for order in orders
        ]

    def capacity_left(self) -> dict[str, float]:
        return {}

    def maybe_reload(self, interval: float = 60.0) -> bool:
        return False


def serve_stub(key: str) -> None:
    """``--stub-server KEY``: the HTTP application with :class:`StubEngine` on a free port."""
    app = make_app(
        StubEngine(), Path("unused.duckdb"), keys=lambda k: "bench" if k == key else None
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"stub on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False)).run(sockets=[sock])


# ------------------------------------------------------------------------------ the load
class Orders:
    """Order signals of the simulator with fresh ids, as encoded request bodies."""

    def __init__(self, pool: int) -> None:
        frame = simulate(pool, weeks=1, seed=2, world="realistic").log.drop(columns=OUTCOMES)
        self.rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
        self.next_id = 10_000_000

    def take(self, n: int) -> list[dict[str, Any]]:
        start = self.next_id
        self.next_id += n
        rows = self.rows
        return [{**rows[(start + k) % len(rows)], "order_id": start + k} for k in range(n)]

    def bodies(self, n: int, size: int = 1) -> Iterator[bytes]:
        for _ in range(n):
            yield json.dumps({"orders": self.take(size)}).encode()


def summary(
    name: str, latencies: Sequence[float], sent: int, seconds: float, errors: int = 0
) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    answered = len(ms)
    return {
        "phase": name,
        "requests": sent,
        "answered": answered,
        "errors": errors,
        "p50_ms": float(np.percentile(ms, 50)) if answered else np.nan,
        "p99_ms": float(np.percentile(ms, 99)) if answered else np.nan,
        "max_ms": float(ms.max()) if answered else np.nan,
        "answers_per_s": answered / seconds if seconds > 0 else np.nan,
    }


ERRORS: list[str] = []


def take_errors() -> int:
    """How many requests of the phase failed; their kinds go to stderr."""
    count = len(ERRORS)
    for message, n in Counter(ERRORS).most_common(5):
        print(f"  {n} x {message}", file=sys.stderr, flush=True)
    ERRORS.clear()
    return count


async def post(client: httpx.AsyncClient, body: bytes) -> bool:
    """Send one request; False (and the error noted) unless it is answered 200."""
    try:
        answer = await client.post("/v1/decisions", content=body)
    except httpx.HTTPError as error:
        ERRORS.append(f"{type(error).__name__}: {error}")
        return False
    if answer.status_code != 200:
        ERRORS.append(f"status {answer.status_code}: {answer.text[:300]}")
        return False
    return True


async def at_rate(url: str, headers: dict[str, str], bodies: list[bytes], rate: float) -> Any:
    """Send ``bodies`` at ``rate`` per second; latency from each one's scheduled start."""
    seconds = len(bodies) / rate
    latencies: list[float] = []
    # At most 64 requests at the server: a server that falls behind is not left a backlog of
    # more than that to work through after the phase (the rest wait, and count, here).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=seconds + 30
    ) as client:
        last = 0.0

        async def one(body: bytes, due: float) -> None:
            nonlocal last
            if await post(client, body):
                last = time.perf_counter()
                latencies.append(last - due)

        started = time.perf_counter()
        tasks = []
        for k, body in enumerate(bodies):
            due = started + k / rate
            await asyncio.sleep(max(due - time.perf_counter(), 0))
            tasks.append(asyncio.create_task(one(body, due)))
        # Answers still missing a phase's length after the last request are counted, not timed.
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        errors = take_errors()
        name = f"single orders at {rate:g}/s"
        return summary(name, latencies, len(bodies), max(last - started, seconds), errors)


async def one_at_a_time(url: str, headers: dict[str, str], bodies: list[bytes], name: str) -> Any:
    latencies = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter()
            if await post(client, body):
                latencies.append(time.perf_counter() - sent)
        errors = take_errors()
        return summary(name, latencies, len(bodies), time.perf_counter() - started, errors)


async def saturate(
    url: str, headers: dict[str, str], orders: Orders, clients: int, seconds: float
) -> Any:
    """``clients`` clients sending single orders back to back for ``seconds``."""
    latencies: list[float] = []
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        end = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal sent
            while time.perf_counter() < end:
                body = json.dumps({"orders": orders.take(1)}).encode()
                sent += 1
                began = time.perf_counter()
                if await post(c, body):
                    latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    errors = take_errors()
    return summary(f"most throughput, {clients} clients", latencies, sent, elapsed, errors)


def answered(url: str) -> float:
    """Requests to /v1/decisions the server has finished, whatever their status."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    prefix = 'uplift_http_requests_total{path="/v1/decisions",'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def drain(url: str, before: float, limit: float = 120.0) -> None:
    """Wait (at most ``limit`` s) until the server has finished the requests of a phase."""
    end = time.monotonic() + limit
    last, still = answered(url), 0
    while time.monotonic() < end and still < 3:
        time.sleep(0.5)
        now = answered(url)
        still = still + 1 if now == last and now > before else 0
        last = now


def phases(url: str, key: str, orders: Orders, args: argparse.Namespace) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    warm = list(orders.bodies(20))
    asyncio.run(one_at_a_time(url, headers, warm, "warm-up"))
    rows = []
    for rate in args.rates:
        singles = list(orders.bodies(int(rate * args.seconds_per_phase)))
        before = answered(url)
        rows.append(asyncio.run(at_rate(url, headers, singles, rate)))
        drain(url, before)
    batches = list(orders.bodies(args.batches, BATCH))
    rows.append(asyncio.run(one_at_a_time(url, headers, batches, f"batches of {BATCH:,} orders")))
    rows.append(asyncio.run(saturate(url, headers, orders, args.clients, args.seconds_per_phase)))
    return rows


# ------------------------------------------------------------------------------ the report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-orders", type=int, default=20_000)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[200.0, 50.0],
        help="Fixed rates of single orders, requests/s, comma-separated (default: 200,50).",
    )
    parser.add_argument("--seconds-per-phase", type=float, default=10.0)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--stub-server", metavar="KEY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub_server:
        serve_stub(args.stub_server)
        return
    started = time.time()
    header = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("building the store ...", file=sys.stderr, flush=True)
        store, key, project = build_store(folder, args.train_orders)
        orders = Orders(5_000)
        uplift = str(Path(sys.executable).with_name("uplift"))
        argv = [uplift, "serve", "--store", str(store), "--config", str(project)]
        argv += ["--port", "0", "--no-access-log", "--reload-seconds", "0"]
        servers = [
            ("uplift serve", argv),
            ("HTTP layer, stub engine", [sys.executable, __file__, "--stub-server", key]),
        ]
        for name, command in servers:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            process, url = start(command, folder / "server.log")
            try:
                rows += [{"server": name, **row} for row in phases(url, key, orders, args)]
            finally:
                stop(process)
            if any(row["errors"] for row in rows):
                tail = (folder / "server.log").read_text().splitlines()[-15:]
                print("server log:", *tail, sep="\n  ", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    command = ".venv/bin/python benchmarks/bench_serve.py " + " ".join(sys.argv[1:])
    text = "\n\n".join(
        [
            "# uplift serve: latency and throughput over loopback",
            f"Command: `{command.strip()}` (generated file; {time.time() - started:.0f} s wall "
            "clock).",
            header,
            f"Model: the weekly job's champion (s_lgbm) on one simulated week of "
            f"{args.train_orders:,} orders (realistic world), 5 treatment arms, the simulator's "
            "costs, no capacities. The service's defaults: 2 engine workers, requests that "
            "wait for one decided together, 10% holdout, journal fsync'ed. Client and server "
            "share the machine's cores. Latency of the fixed-rate phase counts from each "
            "request's scheduled start, so a server that falls behind shows it; `answered` < "
            "`requests` means some were still waiting a phase's length after the last was "
            "sent. `answers_per_s`: answers over the seconds from the first request to the "
            "last answer.",
            "Targets: single orders at 200/s p99 < 25 ms; a batch of 1,000 orders p99 < 150 ms.",
            markdown(table),
        ]
    )
    print(text + "\n", flush=True)
    with atomic_path(Path(args.results) / "serve.md") as out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
