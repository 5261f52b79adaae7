"""The HTTP side of ``uplift serve``: a FastAPI application, run by uvicorn.

Endpoints (the OpenAPI description is at ``/openapi.json``):

``POST /v1/decisions`` (API key)
    ``{"orders": [{"order_id": ..., "order_value": ..., <signals>}, ...]}`` with 1 to 10,000
    orders -> ``{"decisions": [{"order_id", "arm", "propensity", "net_value", "reason",
    "decision_id", "model_id", "risk", "cause"}, ...]}`` in the order of the request. The engine
    runs in a worker thread (at most ``workers`` calls at once), never on the event loop;
    requests that arrive while every worker is busy are decided together in one engine call
    (:class:`Batcher`).
``GET /healthz``
    ``{"status": "ok", "model_id": ...}``; no key.
``GET /metrics``
    Prometheus text (see :mod:`uplift.serve.metrics`); no key: it holds counts, never an order
    or a key, and the service listens on 127.0.0.1 unless told otherwise.

Statuses: 401 without a key or with an unknown or revoked one; 413 for a body over
``max_body_bytes`` (refused from its Content-Length before a byte of it is read, and otherwise
counted while it arrives); 422 for a body that is not JSON or not the schema above, or an order
the engine refuses (the message names the field and the order); 503 when the key store cannot
be read; 500 for anything else, as ``{"error": "internal error", "id": "<uuid>"}`` while the
traceback goes to the server's log under that id. Every error body is JSON with an ``error``
line; none holds a traceback or a file path.

API keys are looked up in the store (only their hashes are kept there) and each answer is
remembered for ``key_cache_seconds`` (5 s by default), so a request does not open the store:
a key revoked with ``uplift keys revoke`` stops working within that time, and a new key
starts working within it too.

Model changes: every ``reload_seconds`` (and on SIGHUP when the service runs in the main
thread) a background task asks the engine for a newer champion (``maybe_reload``) in a worker
thread; requests keep being answered meanwhile, and those in flight finish on the model they
started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol, cast

import anyio
import pydantic_core
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, with_config
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict

from uplift._version import __version__
from uplift.exceptions import SchemaError, StoreError
from uplift.loop.store import Store
from uplift.serve.metrics import CONTENT_TYPE, ServiceMetrics

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_ORDERS",
    "Batcher",
    "DecisionRequest",
    "DecisionResponse",
    "Engine",
    "KeyCache",
    "make_app",
    "settle_heap",
]

logger = logging.getLogger("uplift.serve")

MAX_ORDERS = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: The first validation errors a 422 lists (a batch of 10,000 bad orders would list them all).
MAX_LISTED_ERRORS = 20
DECISIONS_PATH = "/v1/decisions"
PATHS = (DECISIONS_PATH, "/healthz", "/metrics", "/openapi.json", "/docs")


class Engine(Protocol):
    """What the service needs of :class:`uplift.serve.engine.DecisionEngine`."""

    @property
    def model_id(self) -> str: ...

    @property
    def decisions_by_arm(self) -> Mapping[str, int]: ...

    @property
    def failed(self) -> bool:
        """Whether the engine stopped deciding (a journal write failed): restart it."""
        ...

    #: Why the last check for a newer champion failed (None when it did not).
    reload_error: str | None

    def decide(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def capacity_left(self) -> Mapping[str, float]: ...

    def maybe_reload(self, interval: float = ...) -> bool: ...


# ------------------------------------------------------------------------- request models
# The request is validated into plain dicts (TypedDicts, not models): the engine takes dicts,
# and building models to dump them again cost 8 ms of the 11 ms that reading a body of 1,000
# orders took (3 ms as dicts). pydantic reads TypedDicts from typing_extensions below 3.12.
@with_config(ConfigDict(extra="allow"))
class Order(TypedDict):
    """One order: its id, what it is worth, and any signal fields the model reads."""

    order_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
    order_value: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


@with_config(ConfigDict(extra="forbid"))
class DecisionRequest(TypedDict):
    """The body of ``POST /v1/decisions``."""

    orders: Annotated[list[Order], Field(min_length=1, max_length=MAX_ORDERS)]


class Decision(BaseModel):
    """The decision for one order (the engine's fields)."""

    order_id: str | int
    arm: str
    propensity: float
    net_value: float | None
    reason: str
    decision_id: str
    model_id: str
    risk: float | None = None
    cause: str | None = None


class DecisionResponse(BaseModel):
    """The answer of ``POST /v1/decisions``: one decision per order, in the request's order."""

    decisions: list[Decision]


class ErrorBody(BaseModel):
    """Every error answer: one line, and for a 500 the id to find it in the server's log."""

    error: str
    id: str | None = None
    detail: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: str
    model_id: str


# ------------------------------------------------------------------------------ API keys
class KeyCache:
    """Answers of ``lookup(key) -> name or None``, each remembered for ``ttl`` seconds.

    Keys are remembered by their SHA-256, unknown keys too (so a client trying keys costs one
    store read per key and ``ttl``); at most ``max_entries`` answers are kept. Lookups of the
    store are serialised: one store connection at a time, however many requests wait. When
    the store cannot be read (another process holds it longer than its timeout), an answer
    up to ``stale_seconds`` old is used instead, so that a long write does not lock clients
    out; without one the :class:`StoreError` propagates.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        ttl: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
        stale_seconds: float = 300.0,
    ) -> None:
        self._lookup = lookup
        self.ttl = ttl
        self.stale_seconds = stale_seconds
        self._clock = clock
        self.max_entries = max_entries
        # digest -> (when looked up, name or None)
        self._answers: dict[bytes, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()

    def cached(self, key: str) -> tuple[bool, str | None]:
        """``(True, name or None)`` when a fresh answer is remembered, else ``(False, None)``."""
        hit = self._answers.get(self._digest(key))
        if hit is not None and self._clock() - hit[0] < self.ttl:
            return True, hit[1]
        return False, None

    def lookup(self, key: str) -> str | None:
        """The key's name (None: unknown or revoked); reads the store when no answer is fresh."""
        digest = self._digest(key)
        with self._lock:
            known, name = self.cached(key)
            if known:
                return name
            try:
                name = self._lookup(key)
            except StoreError:
                old = self._answers.get(digest)
                if old is None or self._clock() - old[0] > self.stale_seconds:
                    raise
                logger.warning("the store cannot be read; using an API key answer from before")
                return old[1]
            now = self._clock()
            if len(self._answers) >= self.max_entries:
                keep = self.stale_seconds
                self._answers = {d: a for d, a in self._answers.items() if now - a[0] < keep}
                if len(self._answers) >= self.max_entries:
                    self._answers.clear()
            self._answers[digest] = (now, name)
            return name


def request_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key: <key>``."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


# ------------------------------------------------------------------------------ responses
def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response; numpy numbers become JSON numbers and NaN becomes null."""
    body = pydantic_core.to_json(payload, inf_nan_mode="null", fallback=_plain)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; anything else unknown as its text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _internal_error(where: str) -> Response:
    """Log the current exception's traceback under a new id; the client gets only the id."""
    error_id = str(uuid.uuid4())
    logger.exception("internal error %s in %s", error_id, where)
    return _json(500, {"error": "internal error", "id": error_id})


def _validation_detail(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """One line naming the first error's field, and the first errors without their input."""
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in errors[:MAX_LISTED_ERRORS]
    ]
    if not detail:
        return "invalid request", []
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        line = f"the body is not valid JSON: {reason} at character {first['loc'][-1]}"
    elif list(first.get("loc", ())) == ["body"]:
        line = (
            'the body must be a JSON object {"orders": [...]} sent with '
            f"Content-Type: application/json ({detail[0]['msg']})"
        )
    else:
        where = ".".join(str(part) for part in detail[0]["loc"])
        line = f"{where}: {detail[0]['msg']}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return line, detail


# --------------------------------------------------------------------------- the ASGI gate
class _TooLarge(Exception):
    pass


class _Gate:
    """The outer layer of every request: metrics, the size limit, the key, the last resort.

    In this order: time the request and count its status; refuse a body whose Content-Length
    is over the limit (413, nothing read); refuse a request under ``/v1/`` without a valid key
    (401, nothing read); read the body while counting its bytes (413 as soon as it passes the
    limit) and hand it to the application; turn any exception that escapes into a 500 whose
    traceback stays in the log.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        keys: KeyCache,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.keys = keys
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            response = await self._refusal(scope, receive)
            if response is not None:
                await response(scope, receive, send_status)
            else:
                await self.app(scope, self._replay(scope, receive), send_status)
        except Exception:
            if status == 0:
                await _internal_error(f"{scope['method']} {scope['path']}")(
                    scope, receive, send_status
                )
            else:  # the response had started: all that is left is to log it
                logger.exception("error after the response started: %s", scope["path"])
        finally:
            # 499: the client left before any answer (nginx's word for it).
            self.metrics.observe(scope["path"], status or 499, time.perf_counter() - started)

    async def _refusal(self, scope: Scope, receive: Receive) -> Response | None:
        """The response refusing this request, or None (its body is then in ``scope``)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large()
        if scope["path"].startswith("/v1/"):
            refused = await self._check_key(scope, headers)
            if refused is not None:
                return refused
        try:
            scope["uplift.body"] = await self._read_body(receive)
        except _TooLarge:
            return self._too_large()
        return None

    async def _check_key(self, scope: Scope, headers: Mapping[str, str]) -> Response | None:
        key = request_key(headers)
        challenge = {"WWW-Authenticate": "Bearer"}
        if key is None:
            message = "no API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            return _json(401, {"error": message}, challenge)
        known, name = self.keys.cached(key)
        if not known:
            try:
                name = await anyio.to_thread.run_sync(self.keys.lookup, key)
            except StoreError as error:
                logger.error("cannot check an API key: %s", error)
                message = "the API keys cannot be read now; try again in a few seconds"
                return _json(503, {"error": message}, {"Retry-After": "5"})
        if name is None:
            return _json(401, {"error": "unknown or revoked API key"}, challenge)
        scope.setdefault("state", {})["key_name"] = name
        return None

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(scope: Scope, receive: Receive) -> Receive:
        """A receive that gives the body the gate read, then passes the server's on."""
        body = scope.pop("uplift.body", b"")
        given = False

        async def replay() -> Message:
            nonlocal given
            if given:  # only the client's leaving can come now
                return await receive()
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _too_large(self) -> Response:
        limit = self.max_body_bytes
        message = (
            f"the request body is over the limit of {limit / 2**20:g} MB ({limit:,} bytes); "
            f"send at most {MAX_ORDERS:,} orders per request, in several requests"
        )
        return _json(413, {"error": message}, {"Connection": "close"})


# ------------------------------------------------------------------------- the batcher
Outcome = list[dict[str, Any]] | Exception


class Batcher:
    """Requests waiting for the engine go to it together: one ``decide`` call for many.

    At most ``workers`` engine calls run at once, each in a worker thread. A request that
    finds a worker free is decided alone, at once; requests that arrive while every worker is
    busy wait, and the next free worker takes all of them (up to ``max_orders`` orders) in one
    call, then hands each request its own decisions. An engine call costs about 10 ms whatever
    its size (a model prediction, a journal fsync), so under load this multiplies the orders
    decided per second without making a lone request wait for company.

    A combined call that fails (an order the engine refuses, the same order id in two
    requests) is repeated request by request, so that each request gets its own answer or
    its own error (whose order index is then its own). The engine refuses a batch before
    deciding any of it, so nothing is decided twice. One thing differs from separate calls:
    within one call the engine takes the arms' room as at the call's start (see
    :mod:`uplift.serve.engine`), so the propensity of an order decided as room ran out is
    that of the batch. ``together=False`` gives every request a call of its own.
    """

    def __init__(
        self,
        decide: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        workers: int = 2,
        max_orders: int = MAX_ORDERS,
        on_call: Callable[[int, int], None] | None = None,
        *,
        together: bool = True,
    ) -> None:
        self._decide = decide
        self._free = workers
        self.max_orders = max_orders
        self.together = together
        self._waiting: deque[tuple[list[dict[str, Any]], asyncio.Future[Outcome]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_call = on_call

    async def decide(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The decisions of ``orders``, or the engine's exception for them."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((orders, answer))
        if self._free > 0:
            self._free -= 1
            task = loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        outcome = await answer
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _work(self) -> None:
        try:
            while self._waiting:
                taken = self._take()
                try:
                    outcomes = await anyio.to_thread.run_sync(self._call, [o for o, _ in taken])
                except BaseException:  # cancelled (the server stops): nobody waits forever
                    for _, answer in taken:
                        answer.cancel()
                    raise
                for (_, answer), outcome in zip(taken, outcomes, strict=True):
                    if not answer.done():  # a request cancelled meanwhile
                        answer.set_result(outcome)
        finally:
            self._free += 1

    def _take(self) -> list[tuple[list[dict[str, Any]], asyncio.Future[Outcome]]]:
        taken = [self._waiting.popleft()]
        size = len(taken[0][0])
        while (
            self.together and self._waiting and size + len(self._waiting[0][0]) <= self.max_orders
        ):
            size += len(self._waiting[0][0])
            taken.append(self._waiting.popleft())
        return taken

    def _call(self, groups: list[list[dict[str, Any]]]) -> list[Outcome]:
        """In a worker thread: one engine call for every group, split back per group."""
        if len(groups) > 1:
            flat = [order for group in groups for order in group]
            try:
                decided = self._run(flat, len(groups))
            except Exception:
                decided = []
            if len(decided) == len(flat):
                outcomes: list[Outcome] = []
                start = 0
                for group in groups:
                    outcomes.append(decided[start : start + len(group)])
                    start += len(group)
                return outcomes
        return [self._alone(group) for group in groups]

    def _alone(self, orders: list[dict[str, Any]]) -> Outcome:
        try:
            return self._run(orders, 1)
        except Exception as error:
            return error

    def _run(self, orders: list[dict[str, Any]], requests: int) -> list[dict[str, Any]]:
        if self._on_call is not None:
            self._on_call(requests, len(orders))
        return self._decide(orders)


# -------------------------------------------------------------------------- the reloader
def settle_heap() -> None:
    """Keep the garbage collector's full passes off the objects alive now (modules, model).

    A full pass walks every object the collector tracks, some 300,000 once pandas, LightGBM
    and a model are loaded: 150 ms on the 2-core machine, during which no request is
    answered. Frozen objects are skipped by every pass (those freed by their reference count
    still go). Called at start and after a new model came in: the heap is unfrozen and
    collected first, so that a replaced model does not stay frozen for ever.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def _reload_once(engine: Engine, metrics: ServiceMetrics) -> None:
    """Ask the engine for a newer champion now (``interval=0``: this task keeps the time)."""
    before = engine.model_id
    try:
        changed = await anyio.to_thread.run_sync(engine.maybe_reload, 0.0)
    except Exception:
        metrics.count_reload(failed=True)
        logger.exception("checking for a newer champion failed; %s keeps deciding", before)
        return
    if engine.reload_error is not None:
        metrics.count_reload(failed=True)
        logger.error(
            "checking for a newer champion failed; %s keeps deciding: %s",
            before,
            engine.reload_error,
        )
    elif changed:
        metrics.count_reload()
        logger.warning("model %s now decides (was %s)", engine.model_id, before)
        await anyio.to_thread.run_sync(settle_heap)


async def _reload_loop(
    engine: Engine, metrics: ServiceMetrics, seconds: float, wake: asyncio.Event
) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds if seconds > 0 else None)
        wake.clear()
        await _reload_once(engine, metrics)


# ---------------------------------------------------------------------------- the app
def make_app(
    engine: Engine,
    store_path: str | Path,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reload_seconds: float = 30.0,
    key_cache_seconds: float = 5.0,
    workers: int = 2,
    together: bool = True,
    reload_on_sighup: bool = True,
    keys: Callable[[str], str | None] | None = None,
) -> FastAPI:
    """The decision service of ``engine``, checking API keys against the store at ``store_path``.

    ``keys`` replaces the store's lookup (key -> name, None when unknown or revoked).
    ``reload_seconds <= 0`` turns the periodic check for a newer champion off (SIGHUP still
    triggers one). ``workers`` bounds the engine calls that run at once; requests that wait
    for one are decided together in one call unless ``together`` is False (see
    :class:`Batcher`).
    """
    metrics = ServiceMetrics(PATHS)
    lookup = keys if keys is not None else Store(store_path, timeout=5.0).key_name
    key_cache = KeyCache(lookup, key_cache_seconds)
    batcher = Batcher(engine.decide, workers, on_call=metrics.count_engine_call, together=together)
    wake: list[asyncio.Event] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        wake.append(asyncio.Event())
        loop = asyncio.get_running_loop()
        task = loop.create_task(_reload_loop(engine, metrics, reload_seconds, wake[0]))
        settle_heap()
        hangup = False
        if reload_on_sighup and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signal.SIGHUP, wake[0].set)
                hangup = True
        try:
            yield
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="uplift decision service",
        version=__version__,
        description=__doc__ or "",
        lifespan=lifespan,
        # The interactive pages load their scripts from a CDN: nothing here reaches the network.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_Gate, metrics=metrics, keys=key_cache, max_body_bytes=max_body_bytes)
    app.state.metrics = metrics
    app.state.engine = engine

    def reload_now() -> None:
        """Ask the background task to check for a newer champion now."""
        if wake:
            wake[0].set()

    app.state.reload_now = reload_now

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, error: HTTPException) -> Response:
        return _json(error.status_code, {"error": str(error.detail)}, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> Response:
        line, detail = _validation_detail(list(error.errors()))
        return _json(422, {"error": line, "detail": detail})

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": text}
        for code, text in (
            (401, "No API key, or an unknown or revoked one."),
            (413, "The body is over the size limit."),
            (422, "The body is not JSON, does not fit the schema, or an order is refused."),
            (500, "Internal error; the id finds the traceback in the server's log."),
            (503, "The API keys cannot be read, or decisions cannot be journaled, now."),
        )
    }

    @app.post(
        DECISIONS_PATH,
        response_model=DecisionResponse,
        responses=errors,
        dependencies=[
            Security(HTTPBearer(auto_error=False)),
            Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
        ],
        summary="Decide the arm of each order",
    )
    async def decisions(body: DecisionRequest) -> Response:
        # Each order is the dict read from the body, its extra fields (the signals) included.
        orders = cast(list[dict[str, Any]], body["orders"])
        try:
            decided = await batcher.decide(orders)
        except SchemaError as error:
            return _json(422, {"error": str(error)})
        except StoreError as error:
            # The journal cannot take decisions: nothing the client can fix, and the message
            # names files of the server, so it goes to the log only.
            logger.error("cannot decide: %s", error)
            message = "the service cannot record decisions now; its operator is told in its log"
            return _json(503, {"error": message})
        except Exception:
            return _internal_error(DECISIONS_PATH)
        return _json(200, {"decisions": decided})

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "The engine stopped: restart it."}},
        summary="Liveness and the model deciding now",
    )
    async def healthz() -> Response:
        if engine.failed:
            return _json(503, {"status": "failed", "model_id": engine.model_id})
        return _json(200, {"status": "ok", "model_id": engine.model_id})

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        text = metrics.render(
            decisions_by_arm=dict(engine.decisions_by_arm),
            capacity_left=engine.capacity_left(),
            model_id=engine.model_id,
        )
        return Response(text, media_type=CONTENT_TYPE)

    return app
