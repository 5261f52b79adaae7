"""`uplift keys` and `uplift serve` as a user runs them.

The keys commands and the refusals of `uplift serve` run in this process (``uplift_cli``);
the running service is a real `uplift serve` process on a free loopback port, called with
httpx, stopped with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from uplift.cli.serve import _listen
from uplift.data.log import ExperimentLog
from uplift.data.outcomes import simulate_outcomes
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.loop.store import Store
from uplift.loop.weekly import WeeklyConfig, WeeklyJob
from uplift.serve.journal import read_journal

Cli = Callable[..., Any]


def one_line_error(result: Any) -> str:
    """Exit code 2 and exactly one ``error:`` line on stderr, without a traceback."""
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr


# --------------------------------------------------------------------------- uplift keys
def test_keys_create_list_revoke(tmp_path: Path, uplift_cli: Cli) -> None:
    store = tmp_path / "uplift.duckdb"
    created = uplift_cli("keys", "create", "shop-frontend", "--store", store)
    assert created.exit_code == 0, created
    (key,) = created.stdout.splitlines()
    assert re.fullmatch(r"[A-Za-z0-9_\-]{20,}", key)
    assert "cannot be shown again" in created.stderr
    assert Store(store).key_name(key) == "shop-frontend"

    assert uplift_cli("keys", "create", "batch", "--store", store).exit_code == 0
    listed = uplift_cli("keys", "list", "--store", store)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "created", "revoked"]
    assert [line.split()[0] for line in lines[1:]] == ["shop-frontend", "batch"]
    assert key not in listed.stdout
    assert all(line.endswith("-") for line in lines[1:])

    revoked = uplift_cli("keys", "revoke", "shop-frontend", "--store", store)
    assert revoked.exit_code == 0, revoked
    assert "revoked" in revoked.stdout
    assert Store(store).key_name(key) is None
    after = uplift_cli("keys", "list", "--store", store).stdout.splitlines()
    assert not after[1].endswith("-")
    assert after[2].endswith("-")
    # The name is free again: a new key, a new secret.
    again = uplift_cli("keys", "create", "shop-frontend", "--store", store)
    assert again.exit_code == 0
    assert again.stdout.strip() != key


def test_keys_errors_are_one_line(tmp_path: Path, uplift_cli: Cli) -> None:
    store = tmp_path / "uplift.duckdb"
    assert uplift_cli("keys", "create", "a", "--store", store).exit_code == 0
    assert "live key named 'a'" in one_line_error(
        uplift_cli("keys", "create", "a", "--store", store)
    )
    assert "no live key named 'b'" in one_line_error(
        uplift_cli("keys", "revoke", "b", "--store", store)
    )
    assert "key name" in one_line_error(uplift_cli("keys", "create", "bad name", "--store", store))
    assert "Missing argument 'NAME'" in one_line_error(uplift_cli("keys", "create"))


def test_keys_list_of_an_empty_store(tmp_path: Path, uplift_cli: Cli) -> None:
    listed = uplift_cli("keys", "list", "--store", tmp_path / "none.duckdb")
    assert listed.exit_code == 0
    assert "no API keys" in listed.stdout


def test_keys_without_a_subcommand_shows_help(uplift_cli: Cli) -> None:
    shown = uplift_cli("keys")
    assert shown.exit_code == 0
    assert "create" in shown.output
    assert "revoke" in shown.output


# ------------------------------------------------------------------ the service, for real
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
CAPACITY = {"payment_rescue": 8, "expedite": 5}
WEEK = "2026-W40"
SIGNAL_DROP = ["arm", "cancelled", "revenue", "propensity", "delivered", "assigned_at"]


def write_project(path: Path, capacities: dict[str, int], explore: float = 0.0) -> Path:
    costs = ", ".join(f"{arm} = {cost}" for arm, cost in COSTS.items())
    caps = ", ".join(f"{arm} = {n}" for arm, n in capacities.items())
    path.write_text(
        f"[arms]\ncosts = {{ {costs} }}\ncapacities = {{ {caps} }}\n\n"
        f"[policy]\nholdout = 0.1\nexplore = {explore}\n"
    )
    return path


@dataclass(frozen=True)
class Served:
    """A store with a champion and keys, its project file and fresh orders to decide."""

    folder: Path
    store: Path
    config: Path
    key: str
    orders: list[dict[str, Any]]
    no_keys: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("served")
    store = Store(folder / "uplift.duckdb")
    world = simulate(4_000, weeks=1, seed=3, world="easy", start_week=WEEK)
    store.ingest(ExperimentLog.from_frame(world.log))
    config = WeeklyConfig(store=store.path, out=folder / "reports", costs=COSTS, segments=())
    WeeklyJob(config).run(WEEK)
    no_keys = folder / "no-keys.duckdb"
    shutil.copy(store.path, no_keys)
    key = store.create_key("tests")
    pending = simulate(2_000, weeks=1, seed=4, world="easy", first_order_id=100_001)
    frame = pending.log.drop(columns=SIGNAL_DROP)
    orders = json.loads(frame.to_json(orient="records"))
    project = write_project(folder / "uplift.toml", CAPACITY)
    return Served(folder, store.path, project, key, orders, no_keys)


class Service:
    """A running `uplift serve` process on a free loopback port."""

    def __init__(self, served: Served, journal: Path, *extra: str) -> None:
        self.journal = journal
        self.log = journal.with_suffix(".log")
        argv = [sys.executable, "-m", "uplift", "serve", "--store", str(served.store)]
        argv += ["--port", "0", "--config", str(served.config), "--journal", str(journal)]
        argv += ["--reload-seconds", "0", "--no-access-log", *extra]
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=served.folder
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not found:
            self.stop()
            raise RuntimeError(f"uplift serve did not start: {line!r} {self.log.read_text()}")
        self.url = f"http://127.0.0.1:{found[1]}"
        self.client = httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {served.key}"}
        )

    def decide(self, orders: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
        return self.client.post("/v1/decisions", json={"orders": orders}, **kwargs)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and what it printed after its first line."""
        if hasattr(self, "client"):
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


@pytest.fixture(scope="module")
def service(served: Served) -> Iterator[Service]:
    running = Service(served, served.folder / "serve-journal.jsonl")
    yield running
    running.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{wanted}}} " if labels else f"{name} "
    (line,) = [line for line in text.splitlines() if line.startswith(head)]
    return float(line.removeprefix(head))


def test_service_decides_with_the_champion(service: Service, served: Served) -> None:
    answer = service.decide(served.orders[:5])
    assert answer.status_code == 200, answer.text
    decisions = answer.json()["decisions"]
    assert [d["order_id"] for d in decisions] == [o["order_id"] for o in served.orders[:5]]
    assert {d["model_id"] for d in decisions} == {f"{WEEK}-s_lgbm-s0"}
    assert {d["arm"] for d in decisions} <= {CONTROL, *COSTS}
    assert all(0 < d["propensity"] <= 1 for d in decisions)
    health = service.client.get("/healthz").json()
    assert health == {"status": "ok", "model_id": f"{WEEK}-s_lgbm-s0"}


def test_same_order_twice_gets_the_same_decision(service: Service, served: Served) -> None:
    first = service.decide(served.orders[10:12]).json()["decisions"]
    again = service.decide(served.orders[10:12]).json()["decisions"]
    assert [d["decision_id"] for d in again] == [d["decision_id"] for d in first]
    changed = {**served.orders[10], "support_contacts": served.orders[10]["support_contacts"] + 3}
    (new,) = service.decide([changed]).json()["decisions"]
    assert new["decision_id"] != first[0]["decision_id"]


def test_service_refuses_bad_requests_and_stays_up(service: Service, served: Served) -> None:
    no_key = httpx.post(f"{service.url}/v1/decisions", json={"orders": served.orders[:1]})
    wrong = service.decide(served.orders[:1], headers={"Authorization": "Bearer uk_wrong"})
    malformed = service.client.post(
        "/v1/decisions", content=b'{"orders": [', headers={"Content-Type": "application/json"}
    )
    abc = service.decide([{**served.orders[0], "order_value": "abc"}])
    no_id = service.decide([{k: v for k, v in served.orders[0].items() if k != "order_id"}])
    no_signal = service.decide([{k: v for k, v in served.orders[0].items() if k != "device"}])
    huge = service.client.post(
        "/v1/decisions", content=b" " * (20 * 2**20), headers={"Content-Type": "application/json"}
    )
    expected = [(no_key, 401), (wrong, 401), (malformed, 422), (abc, 422), (no_id, 422)]
    expected += [(no_signal, 422), (huge, 413)]
    for answer, status in expected:
        assert answer.status_code == status, answer.text
        assert "Traceback" not in answer.text
        assert ".py" not in answer.text
        assert str(served.folder) not in answer.text
        assert service.client.get("/healthz").status_code == 200
    assert "order_value" in abc.json()["error"]
    assert "order_id" in no_id.json()["error"]
    assert "device" in no_signal.json()["error"]
    assert "Traceback" not in service.log.read_text()


def test_revoked_key_is_refused_within_seconds(
    service: Service, served: Served, uplift_cli: Cli
) -> None:
    created = uplift_cli("keys", "create", "short-lived", "--store", served.store)
    key = created.stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    assert service.decide(served.orders[:1], headers=headers).status_code == 200
    assert uplift_cli("keys", "revoke", "short-lived", "--store", served.store).exit_code == 0
    revoked = time.monotonic()
    while service.decide(served.orders[:1], headers=headers).status_code == 200:
        assert time.monotonic() - revoked < 6.5, "a revoked key still worked after the cache time"
        time.sleep(0.1)
    body = {"orders": served.orders[:1]}
    other = httpx.post(f"{service.url}/v1/decisions", json=body, headers={"X-API-Key": key})
    assert other.status_code == 401


def test_parallel_clients_never_exceed_capacity(service: Service, served: Served) -> None:
    # 16 clients x up to 50 single-order requests (they stop after 30 s, so that a slow
    # model bounds the test's time, not its truth), with capacities far below the orders that
    # want the arms: the arms given never exceed a capacity, in answers, journal and metrics.
    pool = served.orders[100:900]
    given: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 30

    def client(k: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60, headers=service.client.headers) as c:
            for order in pool[k * 50 : (k + 1) * 50]:
                if time.monotonic() > deadline:
                    return
                answer = c.post("/v1/decisions", json={"orders": [order]})
                with lock:
                    if answer.status_code != 200:
                        failures.append(answer.text)
                        continue
                    (decision,) = answer.json()["decisions"]
                    given[decision["arm"]] += 1
                    reasons[decision["reason"]] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sum(given.values()) >= 16 * 5
    for arm, capacity in CAPACITY.items():
        assert given[arm] <= capacity, (arm, given)
    # The capacities bound: some orders were refused an arm they wanted for lack of room.
    assert any("capacity" in reason for reason in reasons), reasons
    records = read_journal(service.journal)
    superseded = {r["supersedes"] for r in records if r.get("supersedes")}
    live = Counter(r["arm"] for r in records if r["decision_id"] not in superseded)
    metrics = service.client.get("/metrics").text
    for arm, capacity in CAPACITY.items():
        assert live[arm] <= capacity
        left = metric(metrics, "uplift_capacity_left", arm=arm)
        assert left >= 0
        assert left == capacity - live[arm]


def test_metrics_of_the_service(service: Service, served: Served) -> None:
    service.decide(served.orders[:3])
    answer = service.client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    for line in text.splitlines():
        assert re.match(r"^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{.*\})? \S+)$", line), line
    assert metric(text, "uplift_http_requests_total", path="/v1/decisions", code="200") > 0
    assert metric(text, "uplift_model_info", model_id=f"{WEEK}-s_lgbm-s0") == 1


# ------------------------------------------------------------- starting, reloading, stopping
def test_sighup_switches_to_a_new_champion_and_sigterm_stops(
    served: Served, tmp_path: Path
) -> None:
    running = Service(served, tmp_path / "journal.jsonl")
    try:
        before = running.decide(served.orders[:1]).json()["decisions"][0]
        store = Store(served.store)
        champion = store.champion()
        assert champion is not None
        newer = dataclasses.replace(champion, model_id="2026-W41-copy", promoted_week="2026-W41")
        store.register_model(newer)
        time.sleep(0.5)  # --reload-seconds 0: nothing changes without the signal
        assert running.client.get("/healthz").json()["model_id"] == champion.model_id
        running.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while running.client.get("/healthz").json()["model_id"] != "2026-W41-copy":
            assert time.monotonic() < deadline, running.log.read_text()
            time.sleep(0.1)
        after = running.decide(served.orders[1:2]).json()["decisions"][0]
        assert before["model_id"] == champion.model_id
        assert after["model_id"] == "2026-W41-copy"
    finally:
        code, out = running.stop()
        store.register_model(dataclasses.replace(newer, promoted_week=None))
    assert code == 0, running.log.read_text()
    assert out.strip() == "stopped"
    assert "now decides" in running.log.read_text()


def test_serve_refuses_to_start_without_what_it_needs(
    served: Served, tmp_path: Path, uplift_cli: Cli
) -> None:
    empty = tmp_path / "empty.duckdb"
    assert "no store here" in one_line_error(uplift_cli("serve", "--store", empty))
    assert uplift_cli("keys", "create", "k", "--store", empty).exit_code == 0
    assert "no champion model" in one_line_error(uplift_cli("serve", "--store", empty))
    assert "no live API key" in one_line_error(uplift_cli("serve", "--store", served.no_keys))


def test_serve_refuses_unknown_arms_in_the_project(
    served: Served, tmp_path: Path, uplift_cli: Cli
) -> None:
    project = write_project(tmp_path / "uplift.toml", {"teleport": 5, "expedite": 3})
    args = ["serve", "--store", served.store, "--config", project, "--port", "0"]
    args += ["--journal", tmp_path / "j.jsonl"]
    error = one_line_error(uplift_cli(*args))
    assert "teleport" in error


def test_serve_refuses_a_port_in_use(served: Served, tmp_path: Path, uplift_cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["serve", "--store", served.store, "--config", served.config]
        args += ["--port", str(port), "--journal", tmp_path / "j.jsonl"]
        error = one_line_error(uplift_cli(*args))
    assert f"cannot listen on 127.0.0.1:{port}" in error


def test_listener_turns_nagle_off(service: Service) -> None:
    # The listening socket names IPPROTO_TCP, so asyncio sets TCP_NODELAY on every connection;
    # without it each answer waits ~40 ms for the client's delayed ACK.
    listener = _listen("127.0.0.1", 0)
    with listener:
        assert listener.proto == socket.IPPROTO_TCP
    times = []
    for _ in range(21):
        started = time.perf_counter()
        assert service.client.get("/healthz").status_code == 200
        times.append(time.perf_counter() - started)
    assert min(times) < 0.02  # with Nagle on, every answer takes >= 40 ms


@pytest.mark.filterwarnings("default::uplift.exceptions.DataWarning")  # arms of few orders
@pytest.mark.parametrize("explore", [0.2, 0.0])
def test_outcomes_of_served_orders_join_their_decisions(
    served: Served, tmp_path: Path, uplift_cli: Cli, explore: float
) -> None:
    # The shop reports what became of the orders it asked about: order, signals, outcome; no
    # arm. Ingest, run while the service serves, imports the journal beside the store and
    # gives every order the arm and propensity the service decided. Exploration keeps every
    # arm possible for every order; without it the policy's targeting shows in the features
    # and the leak guard refuses the log (as the README says).
    store = tmp_path / "uplift.duckdb"
    shutil.copy(served.store, store)
    own = dataclasses.replace(
        served,
        folder=tmp_path,
        store=store,
        config=write_project(tmp_path / "uplift.toml", {}, explore=explore),
    )
    orders = served.orders[1200:1800]
    running = Service(own, tmp_path / "serve-journal.jsonl")
    try:
        decisions = []
        for start in range(0, len(orders), 100):
            answer = running.decide(orders[start : start + 100])
            assert answer.status_code == 200, answer.text
            decisions += answer.json()["decisions"]
        decided = pd.DataFrame(decisions)
        pending = simulate(2_000, weeks=1, seed=4, world="easy", first_order_id=100_001)
        frame = pd.DataFrame(orders)
        log = simulate_outcomes(frame, pending.truth, decided[["order_id", "arm", "propensity"]])
        outcomes = tmp_path / "outcomes.csv"
        log.drop(columns=["arm", "propensity"]).to_csv(outcomes, index=False)
        first = uplift_cli("ingest", outcomes, "--store", store)
        again = uplift_cli("ingest", outcomes, "--store", store)
    finally:
        running.stop()
    assert "600 new decisions imported" in first.output
    if not explore:
        assert first.exit_code == 2
        assert "payment_status" in first.stderr
        assert "differ between arms far beyond chance" in first.stderr
        return
    assert first.exit_code == 0, first.output
    assert "600 orders read, 600 new" in first.output
    assert again.exit_code == 0, again.output
    assert "0 new decisions imported" in again.output
    assert "600 orders read, 0 new" in again.output
    with Store(store).connect(read_only=True) as con:
        stored = con.execute(
            "SELECT order_id, arm, propensity FROM experiment_log WHERE order_id::BIGINT > 100000"
        ).df()
    joined = stored.astype({"order_id": int}).merge(decided, on="order_id", suffixes=("", "_d"))
    assert len(joined) == 600
    assert (joined["arm"] == joined["arm_d"]).all()
    assert np.allclose(joined["propensity"], joined["propensity_d"], rtol=1e-12)
    week = Store(store).weeks()[-1]
    flags = Store(store).decisions([week]).astype({"order_id": int}).set_index("order_id")
    held = decided.set_index("order_id")["reason"].str.contains("holdout")
    assert (flags["holdout"].astype(bool) == held.loc[flags.index]).all()
    assert held.sum() > 0


def test_kill_9_under_load_loses_no_acknowledged_decision(served: Served, tmp_path: Path) -> None:
    # Four clients send single orders back to back; the service is killed with SIGKILL while
    # they do. Every decision a client received is in the journal, none is there twice, and
    # after a restart every journaled order gets its decision back without a new one.
    journal = tmp_path / "killed.jsonl"
    running = Service(served, journal)
    received: list[tuple[int, str]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=running.url, timeout=10, headers=running.client.headers) as c:
            for order in served.orders[1800 + k * 50 : 1800 + (k + 1) * 50]:
                try:
                    answer = c.post("/v1/decisions", json={"orders": [order]})
                except httpx.TransportError:
                    return  # the service is gone
                (decision,) = answer.json()["decisions"]
                with lock:
                    received.append((decision["order_id"], decision["decision_id"]))
                    if len(received) >= 60:
                        enough.set()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=60), "the service answered fewer than 60 orders in 60 s"
    running.process.kill()
    for thread in threads:
        thread.join(timeout=30)
    running.stop()
    records = read_journal(journal)
    ids = [r["decision_id"] for r in records]
    assert len(ids) == len(set(ids))
    assert len({r["order_id"] for r in records}) == len(records)  # one decision per order
    assert {d for _, d in received} <= set(ids)
    assert len(records) < 200  # the kill came while orders were still coming
    again = Service(served, journal)
    try:
        asked = [
            o for o in served.orders[1800:2000] if o["order_id"] in {r["order_id"] for r in records}
        ]
        answer = again.decide(asked)
        metrics = again.client.get("/metrics").text
    finally:
        again.stop()
    by_order = {r["order_id"]: r["decision_id"] for r in records}
    assert [d["decision_id"] for d in answer.json()["decisions"]] == [
        by_order[o["order_id"]] for o in asked
    ]
    assert len(read_journal(journal)) == len(records)  # nothing decided twice
    for arm, capacity in CAPACITY.items():
        used = sum(r["arm"] == arm for r in records)
        assert metric(metrics, "uplift_capacity_left", arm=arm) == capacity - used
