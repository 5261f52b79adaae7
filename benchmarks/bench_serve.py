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

Last, in this process with the servers stopped, the engine alone (no HTTP): milliseconds a
``decide`` call of 1 and of 1,000 new orders, and the CPU of its two ways of scoring orders
(the arrays through the trees, the model's DataFrame methods) by orders a call.

The client shares the server's two cores, so its own cost is part of what is measured: every
phase records the CPU milliseconds per request of the client and of the server. It is
:class:`LeanClient` (keep-alive HTTP/1.1 on asyncio streams) unless ``--client httpx``;
``--compare-httpx`` (the default) sends the first rate's single orders once more with httpx's
AsyncClient, the client of the first measurements, whose own CPU set their p99.

    .venv/bin/python benchmarks/bench_serve.py [--rates 200,50] [--seconds-per-phase 10]

Writes ``benchmarks/results/serve.md`` (``--results DIR`` writes it elsewhere). Every phase is
bounded in requests and seconds; the whole run takes about four minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pandas as pd
import uvicorn
from bench_models import RESULTS, machine, markdown
from numpy.typing import NDArray

from uplift.data.files import atomic_path
from uplift.data.log import ExperimentLog
from uplift.data.project import load_project
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.loop.store import Store
from uplift.loop.weekly import WeeklyConfig, WeeklyJob
from uplift.serve.app import make_app
from uplift.serve.engine import MAX_BATCH, DecisionEngine
from uplift.serve.journal import Journal
from uplift.serve.orders import OrderInputs, prepare
from uplift.serve.scoring import ARRAY_PATH_MAX_ROWS, deploy, predict_frame
from uplift.serve.settings import ServeSettings

OUTCOMES = ["arm", "cancelled", "revenue", "propensity", "delivered", "assigned_at"]
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
WEEK = "2026-W40"
BATCH = 1_000
FloatArray = NDArray[np.float64]
#: Seconds a client keeps a connection idle (uvicorn closes it after 5).
KEEP_ALIVE = 4.0


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
    name: str,
    latencies: Sequence[float],
    sent: int,
    seconds: float,
    errors: int = 0,
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


# ------------------------------------------------------------------------------ the clients
class AnswerError(Exception):
    """An answer other than 200, or one without a decision per order sent."""


class Client(Protocol):
    async def post(self, path: str, body: bytes) -> bytes: ...

    async def aclose(self) -> None: ...


class LeanClient:
    """A lean HTTP/1.1 client on asyncio streams: keep-alive connections (at most ``limit``
    requests at once, each on a connection of its own), the request's head written out in
    full (Host, the key, Content-Type, Content-Length) and the answer read to its last byte by
    its Content-Length. It sends what httpx sends and waits for all of the answer, for a tenth
    of httpx's CPU per request (``client_cpu_ms`` in serve.md), which matters when the client
    shares the server's two cores."""

    def __init__(self, url: str, headers: dict[str, str], limit: int) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"not a URL with a host and port: {url}")
        self.host, self.port = parts.hostname, parts.port
        lines = [f"Host: {parts.netloc}", *(f"{name}: {value}" for name, value in headers.items())]
        self._head = "\r\n".join(lines)
        self._slots = asyncio.Semaphore(limit)
        # (reader, writer, when last answered): the last used is taken first.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server still holds open, else a new one.

        uvicorn closes a connection idle for 5 s (``timeout_keep_alive``); one idle for
        ``KEEP_ALIVE`` s is left, as httpx leaves one idle for its ``keepalive_expiry``, so
        that no request is sent on a connection the server is closing.
        """
        while self._idle:
            reader, writer, used = self._idle.pop()
            if reader.at_eof() or writer.is_closing() or time.monotonic() - used > KEEP_ALIVE:
                writer.close()
                continue
            return reader, writer
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> bytes:
        """The answer's body; :class:`AnswerError` unless its status is 200."""
        async with self._slots:
            reader, writer = await self._connection()
            try:
                head = f"POST {path} HTTP/1.1\r\n{self._head}\r\nContent-Length: {len(body)}"
                writer.write(head.encode() + b"\r\n\r\n" + body)
                status, length, close = _answer_head(await reader.readuntil(b"\r\n\r\n"))
                answer = await reader.readexactly(length)
            except BaseException:  # broken or cancelled mid-answer: the connection is spent
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self._idle.append((reader, writer, time.monotonic()))
        if status != 200:
            raise AnswerError(f"status {status}: {answer[:300]!r}")
        return answer

    async def aclose(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


def _answer_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server closes the connection."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines if line)
    )
    if "content-length" not in fields:
        raise AnswerError(f"an answer without Content-Length: {status_line}")
    close = fields.get("connection", "").lower() == "close"
    return int(status_line.split()[1]), int(fields["content-length"]), close


class HttpxClient:
    """httpx's AsyncClient, the client of the first measurements (``--client httpx``)."""

    def __init__(self, url: str, headers: dict[str, str], limit: int) -> None:
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        self._client = httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120)

    async def post(self, path: str, body: bytes) -> bytes:
        answer = await self._client.post(path, content=body)
        if answer.status_code != 200:
            raise AnswerError(f"status {answer.status_code}: {answer.text[:300]}")
        return answer.content

    async def aclose(self) -> None:
        await self._client.aclose()


#: A client of at most so many requests at once.
ClientMaker = Callable[[int], Client]
CLIENTS: dict[str, Callable[[str, dict[str, str], int], Client]] = {
    "lean": LeanClient,
    "httpx": HttpxClient,
}


def check_answer(answer: bytes, orders: int) -> None:
    """One decision per order sent (read once the latency is taken)."""
    decided = json.loads(answer)["decisions"]
    if len(decided) != orders:
        raise AnswerError(f"{len(decided)} decisions for {orders} orders")


async def timed_post(client: Client, body: bytes, orders: int, due: float) -> float | None:
    """Seconds from ``due`` to the whole answer, None (and the error noted) for an answer
    other than a 200 with one decision per order."""
    try:
        answer = await client.post("/v1/decisions", body)
        done = time.perf_counter()
        check_answer(answer, orders)
    except (AnswerError, OSError, asyncio.IncompleteReadError, httpx.HTTPError) as error:
        ERRORS.append(f"{type(error).__name__}: {error}")
        return None
    return done - due


async def at_rate(make: ClientMaker, bodies: list[bytes], rate: float) -> dict[str, Any]:
    """Send ``bodies`` (one order each) at ``rate`` per second; latency from each one's
    scheduled start."""
    seconds = len(bodies) / rate
    latencies: list[float] = []
    # At most 64 requests at the server: a server that falls behind is not left a backlog of
    # more than that to work through after the phase (the rest wait, and count, here).
    client = make(64)
    last = 0.0

    async def one(body: bytes, due: float) -> None:
        nonlocal last
        latency = await timed_post(client, body, 1, due)
        if latency is not None:
            last = time.perf_counter()
            latencies.append(latency)

    try:
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
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await client.aclose()
    errors = take_errors()
    name = f"single orders at {rate:g}/s"
    return summary(name, latencies, len(bodies), max(last - started, seconds), errors)


async def one_at_a_time(
    make: ClientMaker, bodies: list[bytes], orders: int, name: str
) -> dict[str, Any]:
    latencies = []
    client = make(1)
    try:
        started = time.perf_counter()
        for body in bodies:
            latency = await timed_post(client, body, orders, time.perf_counter())
            if latency is not None:
                latencies.append(latency)
    finally:
        await client.aclose()
    errors = take_errors()
    return summary(name, latencies, len(bodies), time.perf_counter() - started, errors)


async def saturate(
    make: ClientMaker, orders: Orders, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` clients sending single orders back to back for ``seconds``."""
    latencies: list[float] = []
    sent = 0
    client = make(clients)
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal sent
        while time.perf_counter() < end:
            body = json.dumps({"orders": orders.take(1)}).encode()
            sent += 1
            latency = await timed_post(client, body, 1, time.perf_counter())
            if latency is not None:
                latencies.append(latency)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        await client.aclose()
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


def fsync_probe(folder: Path, count: int = 200) -> FloatArray:
    """Milliseconds of ``count`` fsyncs of a small append to a file in ``folder`` (the
    journal's disk), 5 ms apart: what every answer waits for at least once."""
    path = folder / "fsync-probe.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    took = []
    try:
        for _ in range(count):
            os.write(fd, b'{"probe": 1}\n')
            began = time.perf_counter()
            os.fsync(fd)
            took.append(time.perf_counter() - began)
            time.sleep(0.005)
    finally:
        os.close(fd)
        path.unlink()
    return np.asarray(took) * 1000


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    run: Callable[[], dict[str, Any]], url: str, server: int, client: str
) -> dict[str, Any]:
    """A phase's row, with the CPU milliseconds per request of the client (this process) and
    the server (its process, until it has answered the phase's last request)."""
    before = answered(url)
    # This process holds the libraries, the store's week and the pool of orders: a full pass
    # of its garbage collector took 190 ms and stalled the sending of every request behind
    # it. What is alive before the phase is frozen, so that the passes skip it.
    gc.collect()
    gc.freeze()
    client_cpu, server_cpu = time.process_time(), cpu_seconds(server)
    row = run()
    client_cpu = time.process_time() - client_cpu
    drain(url, before)
    server_cpu = cpu_seconds(server) - server_cpu
    requests = max(row["requests"], 1)
    return {
        **row,
        "client": client,
        "client_cpu_ms": 1000 * client_cpu / requests,
        "server_cpu_ms": 1000 * server_cpu / requests,
    }


def phases(
    url: str, server: int, key: str, orders: Orders, args: argparse.Namespace
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def maker(name: str) -> ClientMaker:
        return lambda limit: CLIENTS[name](url, headers, limit)

    make = maker(args.client)
    warm = list(orders.bodies(20))
    asyncio.run(one_at_a_time(make, warm, 1, "warm-up"))
    take_errors()
    rows = []
    for rate in args.rates:
        singles = list(orders.bodies(int(rate * args.seconds_per_phase)))
        run = partial(asyncio.run, at_rate(make, singles, rate))
        rows.append(measured(run, url, server, args.client))
    if args.compare_httpx and args.client != "httpx" and args.rates:
        rate = args.rates[0]
        singles = list(orders.bodies(int(rate * args.seconds_per_phase)))
        run = partial(asyncio.run, at_rate(maker("httpx"), singles, rate))
        rows.append(measured(run, url, server, "httpx"))
    batches = list(orders.bodies(args.batches, BATCH))
    name = f"batches of {BATCH:,} orders"
    run = partial(asyncio.run, one_at_a_time(make, batches, BATCH, name))
    rows.append(measured(run, url, server, args.client))
    run = partial(asyncio.run, saturate(make, orders, args.clients, args.seconds_per_phase))
    rows.append(measured(run, url, server, args.client))
    return rows


# ------------------------------------------------------------------------------ the engine
def engine_alone(store: Path, project: Path, folder: Path, orders: Orders) -> pd.DataFrame:
    """The engine's calls in this process, without HTTP: wall and CPU milliseconds a call of
    1 and of 1,000 new orders, the journal fsync'ed as in the service."""
    settings = ServeSettings.from_project(load_project(project))
    rows = []
    with Journal(folder / "engine-journal.jsonl") as journal:
        engine = DecisionEngine.from_store(store, settings, journal)
        for size, calls in ((1, 500), (BATCH, 30)):
            engine.decide(orders.take(size))  # the first call of a size is not timed
            wall, cpu = [], []
            for _ in range(calls):
                batch = orders.take(size)
                began, began_cpu = time.perf_counter(), time.thread_time()
                engine.decide(batch)
                wall.append(time.perf_counter() - began)
                cpu.append(time.thread_time() - began_cpu)
            ms, cpu_ms = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
            rows.append(
                {
                    "orders_a_call": size,
                    "calls": calls,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "cpu_ms": float(np.median(cpu_ms)),
                }
            )
    return pd.DataFrame(rows)


def scoring_paths(store: Path, project: Path, orders: Orders) -> pd.DataFrame:
    """CPU milliseconds a call (median) of the engine's two scoring paths, by orders a call:
    the arrays through the trees, and the model's DataFrame methods."""
    settings = ServeSettings.from_project(load_project(project))
    record = Store(store).champion()
    assert record is not None  # build_store registered one
    deployed = deploy(record, settings)
    assert deployed.arrays is not None  # the weekly job's S-learner is mirrored
    rows = []
    for size in (1, 10, 100, BATCH, MAX_BATCH):
        inputs = prepare(orders.take(size), deployed.model.inputs, deployed.numeric, "b").inputs
        calls = max(5, min(200, 5_000 // size))
        array_path = partial(deployed.arrays.predict, inputs.columns, size)
        frame_path = partial(frame_scores, deployed.model, inputs, settings)
        rows.append(
            {
                "orders_a_call": size,
                "array_path_cpu_ms": median_cpu_ms(array_path, calls),
                "frame_path_cpu_ms": median_cpu_ms(frame_path, calls),
            }
        )
    return pd.DataFrame(rows)


def frame_scores(model: Any, inputs: OrderInputs, settings: ServeSettings) -> object:
    """The frame path as the engine takes it: the DataFrame built, then scored."""
    return predict_frame(model, inputs.frame(), settings)


def median_cpu_ms(run: Callable[[], object], calls: int) -> float:
    took = []
    for _ in range(calls):
        began = time.process_time()  # the process's: the tree evaluator may use two threads
        run()
        took.append(time.process_time() - began)
    return float(np.median(took) * 1000)


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
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="lean",
        help="The HTTP client of every phase (default: lean, see LeanClient).",
    )
    parser.add_argument(
        "--compare-httpx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also send the first rate's single orders with httpx's client (default: yes).",
    )
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
        fsyncs = [fsync_probe(folder)]
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
                measured_rows = phases(url, process.pid, key, orders, args)
                rows += [{"server": name, **row} for row in measured_rows]
            finally:
                stop(process)
            if any(row["errors"] for row in rows):
                tail = (folder / "server.log").read_text().splitlines()[-15:]
                print("server log:", *tail, sep="\n  ", file=sys.stderr, flush=True)
        fsyncs.append(fsync_probe(folder))
        print("measuring the engine alone ...", file=sys.stderr, flush=True)
        engine = engine_alone(store, project, folder, orders)
        paths = scoring_paths(store, project, orders)
    table = pd.DataFrame(rows)
    first = ["server", "client", "phase"]
    table = table[first + [c for c in table.columns if c not in first]]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    invocation = ".venv/bin/python benchmarks/bench_serve.py " + " ".join(sys.argv[1:])
    text = "\n\n".join(
        [
            "# uplift serve: latency and throughput over loopback",
            f"Command: `{invocation.strip()}` (generated file; {time.time() - started:.0f} s wall "
            "clock).",
            f"{header} Load average at the end {load}.",
            f"Model: the weekly job's champion (s_lgbm) on one simulated week of "
            f"{args.train_orders:,} orders (realistic world), 5 treatment arms, the simulator's "
            "costs, no capacities. The service's defaults: 2 engine workers, requests that "
            "wait for one decided together, 10% holdout, journal fsync'ed (group commit) "
            "before an answer leaves. Every order is new to the service (a fresh id). Client "
            "and server share the machine's cores. Latency counts to the answer's last byte; "
            "in the fixed-rate phases it counts from each request's scheduled start, so a "
            "server that falls behind shows it; `answered` < `requests` means some were still "
            "waiting a phase's length after the last was sent. `answers_per_s`: answers over "
            "the seconds from the first request to the last answer. An answer counts only "
            "with status 200 and one decision per order sent.",
            client_note(table, args.client),
            fsync_note(fsyncs),
            "Targets: single orders at 200/s p99 < 25 ms; a batch of 1,000 orders p99 < 150 ms.",
            markdown(table),
            "## The engine alone",
            "`DecisionEngine.decide` called in the benchmark's process after the servers have "
            "stopped (no HTTP), on the same store, a journal of its own fsync'ed as in the "
            "service: milliseconds a call of new orders, and the call's CPU (median).",
            markdown(engine),
            "The engine's two ways of scoring the same orders (net values, risk and cause; "
            "tests hold them equal to 1e-9): the orders' arrays straight through the trees "
            "(`uplift/serve/fastpath.py`) and the model's DataFrame methods "
            "(`predict_effects`, `predict_risk`); CPU milliseconds a call, median. The engine "
            f"takes the array path up to {ARRAY_PATH_MAX_ROWS:,} orders a call.",
            markdown(paths),
        ]
    )
    print(text + "\n", flush=True)
    with atomic_path(Path(args.results) / "serve.md") as out:
        out.write_text(text + "\n")


def fsync_note(probes: Sequence[FloatArray]) -> str:
    """The fsync latency of the journal's disk, before and after the phases."""
    parts = [
        f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.1f} ms, max "
        f"{ms.max():.1f} ms"
        for ms in probes
    ]
    return (
        f"Disk: an fsync of a small append in the store's folder (what every answer waits for "
        f"at least once; {len(probes[0])} fsyncs 5 ms apart) took {parts[0]} before the "
        f"phases and {parts[-1]} after them. The disk is shared with whatever else the machine "
        "runs; a slow fsync holds every answer of its group commit."
    )


def client_note(table: pd.DataFrame, client: str) -> str:
    """What the client is, and what it costs beside httpx's when both were measured."""
    text = (
        f"Client: `{client}` (see `LeanClient` in the script: keep-alive HTTP/1.1 on asyncio "
        "streams, one process, at most 64 requests at once at a fixed rate; its heap is "
        "frozen before each phase, so that its garbage collector does not hold the sending). "
        "`client_cpu_ms` and `server_cpu_ms`: CPU milliseconds per request of the client's "
        "process and of the server's (until its last answer of the phase). In the first "
        "measurements (httpx, the client's heap not frozen) the stub's p99 at 200/s was 94 ms: "
        "that was the client, not the server. httpx takes several times the lean client's CPU "
        "per request, on the cores the server needs, and a full pass of the client's garbage "
        "collector (190 ms over the heap of the store it had just built) held back every "
        "request due meanwhile."
    )
    httpx_rows = table[table["client"] == "httpx"]
    if client == "httpx" or httpx_rows.empty:
        return text
    for server, row in httpx_rows.set_index("server").iterrows():
        phase = row["phase"]
        lean = table[(table["server"] == server) & (table["phase"] == phase)]
        lean = lean[lean["client"] == client].iloc[0]
        text += (
            f" Against {server}, {phase} with httpx's AsyncClient: p99 {row['p99_ms']:.1f} ms "
            f"and {row['client_cpu_ms']:.2f} ms of client CPU per request, against "
            f"{lean['p99_ms']:.1f} ms and {lean['client_cpu_ms']:.2f} ms with the lean client."
        )
    return text


if __name__ == "__main__":
    main()
