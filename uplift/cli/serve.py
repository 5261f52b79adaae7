"""`uplift serve`, `uplift keys`: the order-decision service and the API keys of its clients."""

from __future__ import annotations

import contextlib
import copy
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from uplift.cli.app import app
from uplift.cli.options import ConfigOption, JournalOption, StoreOption
from uplift.exceptions import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from uplift.loop.store import Store

__all__: list[str] = []


keys_app = typer.Typer(
    help="API keys of `uplift serve`: create NAME, revoke NAME, list.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@app.command(
    help="Serve decisions over HTTP: POST /v1/decisions (API key), GET /healthz, GET /metrics. "
    "Stop it with Ctrl-C or SIGTERM; SIGHUP makes it check for a newer champion at once."
)
def serve(
    store: StoreOption = Path("uplift.duckdb"),
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8080,
    config: ConfigOption = None,
    journal: JournalOption = None,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest request body, in MB (2**20 bytes).")
    ] = 16.0,
    reload_seconds: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds between checks for a newer champion (0: only on SIGHUP)."
        ),
    ] = 30.0,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Engine calls at once (the model holds Python's lock: ~cores)."
        ),
    ] = 2,
    together: Annotated[
        bool,
        typer.Option(
            "--together/--one-by-one",
            help="Decide requests that wait for a worker in one engine call (more orders per "
            "second under load), or each in its own call.",
        ),
    ] = True,
    access_log: Annotated[
        bool, typer.Option(help="Log every request on stderr (uvicorn's access log).")
    ] = True,
) -> None:
    import uvicorn

    from uplift.data.project import load_project
    from uplift.loop.store import Store, default_journal
    from uplift.serve.app import make_app
    from uplift.serve.engine import DecisionEngine
    from uplift.serve.journal import Journal
    from uplift.serve.settings import ServeSettings

    settings = ServeSettings.from_project(load_project(config))
    records = Store(store)
    _check_ready(records)
    journal_path = journal if journal is not None else default_journal(store)
    listener = _listen(host, port)
    with contextlib.closing(listener), _closing_journal(Journal(journal_path)) as book:
        engine = DecisionEngine.from_store(store, settings, book)
        service = make_app(
            engine,
            store,
            max_body_bytes=round(max_body_mb * 2**20),
            reload_seconds=reload_seconds,
            workers=workers,
            together=together,
        )
        bound_port = listener.getsockname()[1]
        typer.echo(
            f"serving model {engine.model_id} on http://{_url_host(host)}:{bound_port} "
            f"(POST /v1/decisions with an API key; GET /healthz, /metrics); journal {journal_path}",
        )
        server = uvicorn.Server(
            uvicorn.Config(
                service,
                log_config=_log_config(),
                access_log=access_log,
                timeout_graceful_shutdown=30,
            )
        )
        with _quiet_stop_signals():
            server.run(sockets=[listener])
    typer.echo("stopped")


def _check_ready(records: Store) -> None:
    """Refuse to start without a champion model or without a live API key, in one line."""
    if not records.path.exists():
        raise ConfigError(
            f"--store {records.path}: no store here; run `uplift ingest LOG` and `uplift weekly`"
        )
    if records.champion() is None:
        raise ConfigError(
            f"--store {records.path}: no champion model to serve; run `uplift weekly` first"
        )
    keys = records.keys()
    if not keys["revoked"].isna().any():
        raise ConfigError(
            f"--store {records.path}: no live API key, so no client could call the service; "
            "create one with `uplift keys create NAME`"
        )


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(
            f"--host {host}: not an address to listen on ({error.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    # The protocol must be named: asyncio sets TCP_NODELAY only on sockets of IPPROTO_TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    listener = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    listener.set_inheritable(True)
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _closing_journal(journal: Any) -> Iterator[Any]:
    """The journal, closed (flushed) however the service stops."""
    try:
        yield journal
    finally:
        close = getattr(journal, "close", None)
        if callable(close):
            close()


@contextlib.contextmanager
def _quiet_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the service gracefully (uvicorn's handlers), then exit 0.

    uvicorn raises a signal it handled again once it has stopped; here that second delivery
    is ignored, so that a stop asked for is not reported as an interrupted command.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the service's own log (errors, reloads) on the same stream."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uplift.serve"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


# ------------------------------------------------------------------------------ uplift keys
@keys_app.command("create", help="Create an API key; it is printed once and never again.")
def create_key(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who the key is for.")],
    store: StoreOption = Path("uplift.duckdb"),
) -> None:
    from uplift.loop.store import Store

    key = Store(store).create_key(name)
    typer.echo(key)
    typer.echo(
        f"API key {name!r} created in {store}. It cannot be shown again (the store keeps only "
        "its hash): copy it now. Clients send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@keys_app.command("revoke", help="Revoke the live API key of NAME.")
def revoke_key(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The key's name.")],
    store: StoreOption = Path("uplift.duckdb"),
) -> None:
    from uplift.loop.store import Store

    Store(store).revoke_key(name)
    typer.echo(
        f"API key {name!r} revoked in {store}; a running service refuses it within 5 seconds."
    )


@keys_app.command("list", help="List the API keys: name, created, revoked (never the key).")
def list_keys(store: StoreOption = Path("uplift.duckdb")) -> None:
    from uplift.loop.store import Store

    keys = Store(store).keys()
    if keys.empty:
        typer.echo(f"no API keys in {store}; create one with `uplift keys create NAME`")
        return
    typer.echo(_keys_table(keys))


def _keys_table(keys: pd.DataFrame) -> str:
    """Plain aligned columns: name, created, revoked ('-' for a live key)."""

    def when(value: Any) -> str:
        return "-" if value is None or value != value else str(value)[:19]

    rows = [("name", "created", "revoked")]
    rows += [(str(r.name), when(r.created), when(r.revoked)) for r in keys.itertuples()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
