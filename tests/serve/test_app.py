"""The HTTP side of the decision service, over a real loopback socket.

Most tests serve a small fake engine (the interface of ``uplift.serve.engine.DecisionEngine``)
with uvicorn in a background thread and call it with httpx, so that every status is checked
as a client sees it: keys, sizes, validation, errors, metrics and reloads. The last section
serves the real engine on a small store built from a simulated week.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from uplift.exceptions import SchemaError, StoreError
from uplift.serve.app import Batcher, KeyCache, make_app, request_key
from uplift.serve.metrics import Histogram, escape_label, format_value, sample_line

KEY = "test-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ helpers
class FakeEngine:
    """Decides ``expedite`` for orders worth over 100, else ``control``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.model_id = "fake-1"
        self.counts: Counter[str] = Counter()
        self.next_model: str | None = None
        self.reload_fails: bool | str = False
        self.calls = 0
        self.reload_error: str | None = None
        self.failed = False

    @property
    def decisions_by_arm(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self.counts)

    def decide(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, order in enumerate(orders):
            if "bad_signal" in order:
                raise SchemaError(f"order {i}: signal 'bad_signal' must be a number")
            if "boom" in order:
                raise RuntimeError(f"secret state in {__file__}")
            if "journal_down" in order:
                raise StoreError(f"{__file__}: a journal write failed")
            if "slow" in order:
                time.sleep(float(order["slow"]))
        model_id = self.model_id
        out = []
        for order in orders:
            arm = "expedite" if order["order_value"] > 100 else "control"
            out.append(
                {
                    "order_id": order["order_id"],
                    "arm": arm,
                    "propensity": 1.0,
                    "net_value": math.nan if arm == "control" else 1.5,
                    "reason": "fake",
                    "decision_id": f"{model_id}:{order['order_id']}",
                    "model_id": model_id,
                    "risk": 0.1,
                    "cause": None,
                }
            )
        with self._lock:
            self.calls += 1
            self.counts.update(d["arm"] for d in out)
        return out

    def capacity_left(self) -> dict[str, float]:
        with self._lock:
            return {"expedite": 100.0 - self.counts["expedite"], "agent_call": math.inf}

    def maybe_reload(self, interval: float = 60.0) -> bool:
        assert interval == 0
        if self.reload_fails == "error":
            self.reload_error = "the store is busy"
            return False
        self.reload_error = None
        if self.reload_fails:
            raise RuntimeError("the store is gone")
        if self.next_model is None or self.next_model == self.model_id:
            return False
        self.model_id = self.next_model
        return True


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    # IPPROTO_TCP named, or asyncio leaves Nagle on: 40 ms a response (see uplift.cli.serve).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


class Keys:
    """A key lookup over a dict, counting how often the 'store' is read."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.reads = 0

    def __call__(self, key: str) -> str | None:
        self.reads += 1
        if key == "store-down":
            raise StoreError("uplift.duckdb: another process has held the store for 5 s")
        return self.keys.get(key)


def orders(n: int, start: int = 1, **signals: Any) -> list[dict[str, Any]]:
    return [
        {"order_id": i, "order_value": 50.0 + i, "payment_status": "ok", **signals}
        for i in range(start, start + n)
    ]


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def check_clean(response: httpx.Response) -> dict[str, Any]:
    """An error answer: JSON with an ``error`` line, no traceback, no file path."""
    text = response.text
    assert "Traceback" not in text
    assert ".py" not in text
    assert str(REPO) not in text
    assert not re.search(r"/(home|work|usr|tmp|root)/", text), text
    body = response.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    return body


def check_alive(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys({KEY: "tests", "revoked-soon": "temp"})


@pytest.fixture(scope="module")
def base_url(
    fake: FakeEngine, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    app = make_app(
        fake,
        tmp_path_factory.mktemp("store") / "uplift.duckdb",
        keys=keys,
        key_cache_seconds=0.3,
        max_body_bytes=16 * 2**20,
        reload_seconds=0.2,
    )
    with serving(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


# ------------------------------------------------------------------------------- access
def test_decisions_with_a_bearer_key(client: httpx.Client) -> None:
    answer = client.post("/v1/decisions", json={"orders": orders(3, start=99)}, headers=auth())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    decisions = answer.json()["decisions"]
    assert [d["order_id"] for d in decisions] == [99, 100, 101]
    assert [d["arm"] for d in decisions] == ["expedite", "expedite", "expedite"]
    assert set(decisions[0]) == {
        "order_id", "arm", "propensity", "net_value", "reason", "decision_id", "model_id",
        "risk", "cause",
    }  # fmt: skip


def test_decisions_with_an_x_api_key_header(client: httpx.Client) -> None:
    body = {"orders": [{"order_id": "A-1", "order_value": 10, "channel": "web", "n": None}]}
    answer = client.post("/v1/decisions", json=body, headers={"X-API-Key": KEY})
    assert answer.status_code == 200, answer.text
    (decision,) = answer.json()["decisions"]
    assert decision["order_id"] == "A-1"
    # NaN from the engine becomes JSON null, never the invalid token NaN.
    assert decision["net_value"] is None
    assert "NaN" not in answer.text


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "no API key"),
        ({"Authorization": "Bearer"}, "no API key"),
        ({"Authorization": f"Basic {KEY}"}, "no API key"),
        ({"Authorization": "Bearer wrong-key"}, "unknown or revoked"),
        ({"X-API-Key": "wrong-key"}, "unknown or revoked"),
    ],
)
def test_missing_or_wrong_key_is_401(
    client: httpx.Client, headers: dict[str, str], message: str
) -> None:
    answer = client.post("/v1/decisions", json={"orders": orders(1)}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert message in check_clean(answer)["error"]
    check_alive(client)


def test_unauthenticated_body_is_not_read(client: httpx.Client) -> None:
    # No key: 401 even for a body that is not JSON, so strangers cannot make the service parse.
    answer = client.post("/v1/decisions", content=b"{not json", headers={"X-API-Key": "nope"})
    assert answer.status_code == 401


def test_revoked_key_stops_within_the_cache_time(client: httpx.Client, keys: Keys) -> None:
    body = {"orders": orders(1)}
    assert client.post("/v1/decisions", json=body, headers=auth("revoked-soon")).status_code == 200
    del keys.keys["revoked-soon"]
    deadline = time.monotonic() + 5
    while client.post("/v1/decisions", json=body, headers=auth("revoked-soon")).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still worked after 5 s"
        time.sleep(0.05)
    answer = client.post("/v1/decisions", json=body, headers=auth("revoked-soon"))
    assert answer.status_code == 401
    check_clean(answer)


def test_keys_are_cached_between_requests(client: httpx.Client, keys: Keys) -> None:
    body = {"orders": orders(1)}
    client.post("/v1/decisions", json=body, headers=auth())
    before, started = keys.reads, time.monotonic()
    for _ in range(10):
        assert client.post("/v1/decisions", json=body, headers=auth()).status_code == 200
    # One read per expiry of the 0.3 s cache at most, however slow the machine.
    assert keys.reads - before <= 1 + (time.monotonic() - started) / 0.3


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"orders": [{"order_id": 1, "order_value": 2}', "not valid JSON"),
        (b"", "body"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"orders": [{"order_id": 1, "order_value": "abc"}]}), "orders.0.order_value"),
        (json.dumps({"orders": [{"order_id": 1, "order_value": -1}]}), "orders.0.order_value"),
        (json.dumps({"orders": [{"order_id": 1, "order_value": True}]}), "orders.0.order_value"),
        (json.dumps({"orders": [{"order_id": 1}]}), "orders.0.order_value"),
        (json.dumps({"orders": [*orders(2), {"order_value": 1.0}]}), "orders.2.order_id"),
        (json.dumps({"orders": [{"order_id": 1.5, "order_value": 1}]}), "orders.0.order_id"),
        (json.dumps({"orders": [{"order_id": [1], "order_value": 1}]}), "orders.0.order_id"),
        (json.dumps({"orders": [{"order_id": "", "order_value": 1}]}), "orders.0.order_id"),
        (json.dumps({"orders": []}), "body.orders"),
        (json.dumps({"orders": orders(10_001)}), "body.orders"),
        (json.dumps({"order": orders(1)}), "body.orders"),
        (json.dumps({"orders": orders(1), "extra": 1}), "body.extra"),
    ],
)
def test_invalid_body_is_422_naming_the_field(
    client: httpx.Client, content: str | bytes, field: str
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    answer = client.post("/v1/decisions", content=content, headers=headers)
    assert answer.status_code == 422, answer.text
    body = check_clean(answer)
    assert field in body["error"]
    assert len(body["detail"]) <= 20
    check_alive(client)


def test_many_bad_orders_list_a_few_errors(client: httpx.Client) -> None:
    bad = [{"order_id": i, "order_value": "x"} for i in range(5_000)]
    answer = client.post("/v1/decisions", json={"orders": bad}, headers=auth())
    assert answer.status_code == 422
    body = check_clean(answer)
    assert body["error"].endswith("(and 4999 more errors)")
    assert len(body["detail"]) == 20
    assert len(answer.content) < 10_000


def test_engine_schema_error_is_422_with_its_message(client: httpx.Client) -> None:
    body = {"orders": [*orders(2), {"order_id": 3, "order_value": 1, "bad_signal": "x"}]}
    answer = client.post("/v1/decisions", json=body, headers=auth())
    assert answer.status_code == 422
    assert check_clean(answer)["error"] == "order 2: signal 'bad_signal' must be a number"
    check_alive(client)


def test_engine_crash_is_500_with_an_id_and_the_traceback_in_the_log(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="uplift.serve"):
        answer = client.post("/v1/decisions", json={"orders": orders(1, boom=1)}, headers=auth())
    assert answer.status_code == 500
    body = check_clean(answer)
    assert body["error"] == "internal error"
    error_id = str(uuid.UUID(body["id"]))
    assert "secret" not in answer.text
    (record,) = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info is not None
    assert "secret state" in str(record.exc_info[1])
    check_alive(client)


def test_journal_failure_is_503_and_healthz_says_so(client: httpx.Client, fake: FakeEngine) -> None:
    body = {"orders": orders(1, journal_down=1)}
    answer = client.post("/v1/decisions", json=body, headers=auth())
    assert answer.status_code == 503
    assert "cannot record decisions" in check_clean(answer)["error"]
    fake.failed = True
    try:
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "failed"
    finally:
        fake.failed = False
    check_alive(client)


# ---------------------------------------------------------------------------------- size
def test_body_over_the_limit_is_413_from_its_content_length(client: httpx.Client) -> None:
    big = b'{"orders": [' + b" " * (20 * 2**20) + b"]}"
    answer = client.post("/v1/decisions", content=big, headers=auth())
    assert answer.status_code == 413
    assert "limit of 16 MB" in check_clean(answer)["error"]
    check_alive(client)


def test_body_over_the_limit_is_413_before_it_is_sent(base_url: str) -> None:
    # A raw request announcing 20 MB and sending none of it: the answer comes at once.
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: {20 * 2**20}\r\n\r\n".encode()
        )
        head = raw.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")


def test_streamed_body_over_the_limit_is_413_while_it_arrives(client: httpx.Client) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"orders": ['
        for _ in range(20):  # 20 MB without a Content-Length: chunked
            sent += 2**20
            yield b" " * 2**20
        yield b"]}"

    answer = client.post("/v1/decisions", content=chunks(), headers=auth())
    assert answer.status_code == 413
    check_clean(answer)
    check_alive(client)


def test_ten_thousand_orders_of_twenty_fields_fit(client: httpx.Client) -> None:
    signals = {f"signal_{k}": 0.123456789 * k for k in range(17)}
    body = {"orders": orders(10_000, **signals)}
    assert len(json.dumps(body)) < 16 * 2**20
    answer = client.post("/v1/decisions", json=body, headers=auth())
    assert answer.status_code == 200
    assert len(answer.json()["decisions"]) == 10_000


# ------------------------------------------------------------------------ other endpoints
def test_healthz_needs_no_key(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "model_id": "fake-1"}


def test_unknown_paths_and_methods_answer_json(client: httpx.Client) -> None:
    assert check_clean(client.get("/nowhere"))["error"] == "Not Found"
    answer = client.get("/v1/decisions", headers=auth())
    assert answer.status_code == 405
    check_clean(answer)


def test_openapi_describes_the_decisions(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/decisions"]["post"]
    assert {"200", "401", "413", "422", "500"} <= set(post["responses"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    order = spec["components"]["schemas"]["Order"]
    assert set(order["required"]) == {"order_id", "order_value"}
    assert {"/healthz", "/metrics"} <= set(spec["paths"])


def test_the_event_loop_is_free_while_the_engine_works(client: httpx.Client) -> None:
    result: list[int] = []
    slow = threading.Thread(
        target=lambda: result.append(
            client.post(
                "/v1/decisions", json={"orders": orders(1, slow=1.0)}, headers=auth()
            ).status_code
        )
    )
    slow.start()
    time.sleep(0.2)
    with httpx.Client(base_url=str(client.base_url), timeout=5) as other:
        started = time.perf_counter()
        check_alive(other)
        assert time.perf_counter() - started < 0.5
    slow.join()
    assert result == [200]


# ------------------------------------------------------------------------------- metrics
SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)\})? '
    r"(?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|Inf|NaN))$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def parse_prometheus(text: str) -> dict[str, dict[str, Any]]:
    """Families of the Prometheus text format 0.0.4, checked line by line."""
    assert text.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            families.setdefault(name, {"samples": []})["help"] = line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            assert "type" not in families.get(name, {}), f"two TYPE lines for {name}"
            families.setdefault(name, {"samples": []})["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match["name"]
            family = next(
                f for f in (name, re.sub(r"_(bucket|sum|count)$", "", name)) if f in families
            )
            assert "type" in families[family], f"{name} before its TYPE line"
            labels = dict(LABEL.findall(match["labels"] or ""))
            families[family]["samples"].append((name, labels, float(match["value"])))
    return families


def test_metrics_parse_as_prometheus_text(client: httpx.Client, fake: FakeEngine) -> None:
    client.post("/v1/decisions", json={"orders": orders(2)}, headers=auth())
    client.post("/v1/decisions", json={"orders": orders(1)}, headers=auth("wrong"))
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_prometheus(answer.text)
    assert families["uplift_decisions_total"]["type"] == "counter"
    decided = {s[1]["arm"]: s[2] for s in families["uplift_decisions_total"]["samples"]}
    assert decided == pytest.approx(dict(fake.decisions_by_arm))
    left = {s[1]["arm"]: s[2] for s in families["uplift_capacity_left"]["samples"]}
    assert left["agent_call"] == math.inf
    codes = {
        (s[1]["path"], s[1]["code"]) for s in families["uplift_http_requests_total"]["samples"]
    }
    assert {("/v1/decisions", "200"), ("/v1/decisions", "401")} <= codes
    histogram = families["uplift_http_request_duration_seconds"]
    assert histogram["type"] == "histogram"
    buckets = [s for s in histogram["samples"] if s[1].get("path") == "/v1/decisions"]
    counts = [s[2] for s in buckets if s[0].endswith("_bucket")]
    assert counts == sorted(counts)
    assert [s for s in buckets if s[0].endswith("_bucket")][-1][1]["le"] == "+Inf"
    (total,) = [s[2] for s in buckets if s[0].endswith("_count")]
    assert counts[-1] == total


def test_prometheus_client_reads_the_metrics(client: httpx.Client) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    families = {
        f.name: f for f in parser.text_string_to_metric_families(client.get("/metrics").text)
    }
    decisions = families.get("uplift_decisions") or families["uplift_decisions_total"]
    assert decisions.type == "counter"
    assert families["uplift_http_request_duration_seconds"].type == "histogram"


def test_metric_formatting() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert sample_line("x_total", {"arm": 'say "hi"'}, 2) == 'x_total{arm="say \\"hi\\""} 2'
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.lines("h", {}) == [
        'h_bucket{le="0.1"} 2', 'h_bucket{le="1"} 3', 'h_bucket{le="+Inf"} 4',
        "h_sum 7.65", "h_count 4",
    ]  # fmt: skip


# ------------------------------------------------------------------------------- reloads
def test_model_changes_without_downtime(client: httpx.Client, fake: FakeEngine) -> None:
    fake.next_model = "fake-2"
    deadline = time.monotonic() + 10
    while client.get("/healthz").json()["model_id"] != "fake-2":
        answer = client.post("/v1/decisions", json={"orders": orders(1)}, headers=auth())
        assert answer.status_code == 200
        assert time.monotonic() < deadline, "the new model was not picked up"
        time.sleep(0.05)
    answer = client.post("/v1/decisions", json={"orders": orders(1)}, headers=auth())
    assert answer.json()["decisions"][0]["model_id"] == "fake-2"
    metrics = parse_prometheus(client.get("/metrics").text)
    assert metrics["uplift_model_reloads_total"]["samples"][0][2] >= 1
    info = metrics["uplift_model_info"]["samples"]
    assert [s[1]["model_id"] for s in info] == ["fake-2"]


@pytest.mark.parametrize("failure", [True, "error"], ids=["raises", "reload_error"])
def test_failed_reload_keeps_the_model(
    client: httpx.Client, fake: FakeEngine, caplog: pytest.LogCaptureFixture, failure: bool | str
) -> None:
    before = client.get("/healthz").json()["model_id"]
    with caplog.at_level(logging.ERROR, logger="uplift.serve"):
        fake.reload_fails = failure
        try:
            deadline = time.monotonic() + 10
            while not any("newer champion failed" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            fake.reload_fails = False
    assert client.get("/healthz").json()["model_id"] == before
    metrics = parse_prometheus(client.get("/metrics").text)
    assert metrics["uplift_model_reload_errors_total"]["samples"][0][2] >= 1


# ------------------------------------------------------------------------------- batcher
def run_batcher(bad: set[int], n: int = 8) -> tuple[list[list[int]], list[Any]]:
    """One slow request holds the only worker while ``n`` more wait; what the engine saw."""
    calls: list[list[int]] = []
    release = threading.Event()

    def decide(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [order["order_id"] for order in orders]
        calls.append(ids)
        if ids == [0]:
            release.wait(10)
        for index, order_id in enumerate(ids):
            if order_id in bad:
                raise SchemaError(f"orders[{index}].device must be a text; got 3")
        return [{"order_id": i, "arm": "control"} for i in ids]

    async def main() -> list[Any]:
        batcher = Batcher(decide, workers=1)
        first = asyncio.create_task(batcher.decide([{"order_id": 0}]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.decide([{"order_id": k}])) for k in range(1, n + 1)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    return calls, asyncio.run(main())


def test_waiting_requests_share_one_engine_call() -> None:
    calls, results = run_batcher(bad=set())
    assert calls == [[0], [1, 2, 3, 4, 5, 6, 7, 8]]
    assert [r[0]["order_id"] for r in results] == list(range(9))


def test_a_refused_request_does_not_fail_the_others_it_waited_with() -> None:
    calls, results = run_batcher(bad={5})
    assert calls == [[0], [1, 2, 3, 4, 5, 6, 7, 8], [1], [2], [3], [4], [5], [6], [7], [8]]
    assert isinstance(results[5], SchemaError)
    assert str(results[5]) == "orders[0].device must be a text; got 3"  # its own index
    assert [r[0]["order_id"] for k, r in enumerate(results) if k != 5] == [0, 1, 2, 3, 4, 6, 7, 8]


def test_batches_hold_at_most_max_orders() -> None:
    calls: list[int] = []
    release = threading.Event()

    def decide(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(orders))
        release.wait(10)
        return [{"order_id": o["order_id"]} for o in orders]

    async def main() -> None:
        batcher = Batcher(decide, workers=1, max_orders=10)
        tasks = [asyncio.create_task(batcher.decide([{"order_id": 0}]))]
        await asyncio.sleep(0.05)
        tasks += [asyncio.create_task(batcher.decide([{"order_id": k}] * 4)) for k in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert calls == [1, 8, 8, 4]


def test_metrics_count_engine_calls(client: httpx.Client) -> None:
    before = parse_prometheus(client.get("/metrics").text)
    client.post("/v1/decisions", json={"orders": orders(3)}, headers=auth())
    after = parse_prometheus(client.get("/metrics").text)
    for name, more in (("calls", 1), ("requests", 1), ("orders", 3)):
        family = f"uplift_engine_{name}_total"
        assert after[family]["samples"][0][2] - before[family]["samples"][0][2] == more


# ------------------------------------------------------------------------ key cache unit
def test_key_cache_remembers_answers_for_its_ttl() -> None:
    now = [0.0]
    lookup = Keys({"k": "name"})
    cache = KeyCache(lookup, ttl=5.0, clock=lambda: now[0], max_entries=3)
    assert cache.cached("k") == (False, None)
    assert cache.lookup("k") == "name"
    assert cache.lookup("unknown") is None
    assert cache.cached("k") == (True, "name")
    assert cache.cached("unknown") == (True, None)
    assert lookup.reads == 2
    lookup.keys.clear()
    now[0] = 4.9
    assert cache.lookup("k") == "name"
    assert lookup.reads == 2
    now[0] = 5.1
    assert cache.cached("k") == (False, None)
    assert cache.lookup("k") is None
    assert lookup.reads == 3
    for key in ("a", "b", "c", "d"):
        cache.lookup(key)
    assert len(cache._answers) <= 3


def test_key_cache_uses_an_old_answer_while_the_store_is_busy() -> None:
    now = [0.0]
    answers: dict[str, str | None] = {"k": "name"}

    def lookup(key: str) -> str | None:
        if answers.get("down"):
            raise StoreError("busy")
        return answers.get(key)

    cache = KeyCache(lookup, ttl=5.0, clock=lambda: now[0], stale_seconds=60.0)
    assert cache.lookup("k") == "name"
    answers["down"] = "yes"
    now[0] = 30.0
    assert cache.lookup("k") == "name"
    with pytest.raises(StoreError, match="busy"):
        cache.lookup("never-seen")
    now[0] = 61.0
    with pytest.raises(StoreError, match="busy"):
        cache.lookup("k")


def test_unreadable_key_store_is_503(client: httpx.Client) -> None:
    answer = client.post("/v1/decisions", json={"orders": orders(1)}, headers=auth("store-down"))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "cannot be read now" in check_clean(answer)["error"]
    check_alive(client)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"x-api-key": " abc "}, "abc"),
        ({"authorization": "Bearer abc", "x-api-key": "def"}, "abc"),
        ({"authorization": "Basic abc", "x-api-key": "def"}, "def"),
        ({"authorization": "Basic abc"}, None),
        ({}, None),
    ],
)
def test_request_key(headers: dict[str, str], key: str | None) -> None:
    assert request_key(headers) == key
