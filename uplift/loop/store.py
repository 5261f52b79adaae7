"""The embedded store: one DuckDB file holding what the weekly loop needs to remember.

Tables (see ``SCHEMA``):

``experiment_log``
    One row per order: ``order_id`` (kept as text, whatever its type in the file), ``week``
    (ISO ``YYYY-Www``), the canonical columns (``arm``, ``retained``, ``order_value``,
    ``revenue``, ``propensity``, ``assigned_at``), ``ingest_id``, then one column per feature.
    A log that brings a new feature adds a column; earlier orders hold NULL in it.
``ingests``
    One row per file (or frame) that added orders: source, content hash, rows seen and new.
``models``
    The registry: every trained model with the week it was trained in, learner, saved
    directory, model card (JSON), its doubly-robust policy value and ``promoted_week``, the
    week it became champion (NULL if it never did). The champion during a week is the model
    promoted most recently before it.
``assignments``
    Ranked queues, one row per order and week, with the arm, holdout flag and propensity.
``reports``
    Every report written: week, path, creation time and the headline figures (JSON).
``prices``
    The shadow price of each arm's capacity in a week's allocation: the decision service
    (``uplift serve``) starts its online prices from the newest week's.
``decisions``
    Decisions of the service imported from its journal (:meth:`Store.import_journal`), one row
    per ``decision_id``: order, week, arm, propensity, model, time, the decision it
    ``supersedes`` and whether a later one ``superseded`` it.
``api_keys``
    Keys of the service's clients: name, SHA-256 of the key (never the key), created, revoked.

DuckDB lets one process write a file at a time. Every operation opens its own short
connection, waiting up to ``timeout`` seconds for another writer to finish, so two processes
never corrupt the store: one waits, or fails with :class:`StoreError` naming the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from uplift.data.files import to_json_ready
from uplift.data.log import ExperimentLog
from uplift.data.normalize import check_week, order_id_kind
from uplift.data.sql import quote_identifier
from uplift.exceptions import ConfigError, SchemaError, StoreError, describe_rows

__all__ = [
    "DEFAULT_STORE",
    "JOURNAL_FIELDS",
    "JOURNAL_NAME",
    "SCHEMA",
    "IngestResult",
    "ModelRecord",
    "Store",
    "default_journal",
    "file_sha256",
    "read_journal",
]

DEFAULT_STORE = Path("uplift.duckdb")
#: The file name of ``uplift serve``'s decision journal, beside its store unless told otherwise.
JOURNAL_NAME = "serve-journal.jsonl"
SCHEMA_VERSION = "1"

# Columns of ``experiment_log`` that are not features, in the order they are stored.
LOG_COLUMNS: dict[str, str] = {
    "order_id": "VARCHAR PRIMARY KEY",
    "week": "VARCHAR NOT NULL",
    "arm": "VARCHAR NOT NULL",
    "retained": "TINYINT",
    "order_value": "DOUBLE",
    "revenue": "DOUBLE",
    "propensity": "DOUBLE",
    "delivered": "TINYINT",
    "assigned_at": "TIMESTAMP",
    "ingest_id": "INTEGER NOT NULL",
}
QUEUE_COLUMNS: dict[str, str] = {
    "order_id": "VARCHAR",
    "arm": "VARCHAR",
    "rank": "BIGINT",
    "net_value": "DOUBLE",
    "expected_retained_revenue": "DOUBLE",
    "cost": "DOUBLE",
    "holdout": "BOOLEAN",
    "propensity": "DOUBLE",
    "policy_arm": "VARCHAR",
    "reason": "VARCHAR",
}
_LOG_DDL = ",\n  ".join(f"{name} {kind}" for name, kind in LOG_COLUMNS.items())
_QUEUE_DDL = ",\n  ".join(f"{name} {kind}" for name, kind in QUEUE_COLUMNS.items())
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS experiment_log (
  {_LOG_DDL}
);
CREATE TABLE IF NOT EXISTS ingests (
  ingest_id INTEGER PRIMARY KEY, source VARCHAR, sha256 VARCHAR, control VARCHAR,
  n_rows BIGINT, n_new BIGINT, weeks VARCHAR, ingested_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS models (
  model_id VARCHAR PRIMARY KEY, week VARCHAR NOT NULL, learner VARCHAR, path VARCHAR,
  card JSON, policy_value DOUBLE, policy_value_se DOUBLE, promoted_week VARCHAR,
  created_at TIMESTAMP, digest VARCHAR
);
CREATE TABLE IF NOT EXISTS assignments (
  week VARCHAR NOT NULL, model_id VARCHAR,
  {_QUEUE_DDL}
);
CREATE TABLE IF NOT EXISTS reports (
  week VARCHAR PRIMARY KEY, path VARCHAR, created_at TIMESTAMP, headline JSON
);
CREATE TABLE IF NOT EXISTS prices (
  week VARCHAR NOT NULL, arm VARCHAR NOT NULL, price DOUBLE NOT NULL, saved_at TIMESTAMP,
  PRIMARY KEY (week, arm)
);
CREATE TABLE IF NOT EXISTS decisions (
  decision_id VARCHAR PRIMARY KEY, order_id VARCHAR NOT NULL, week VARCHAR NOT NULL,
  arm VARCHAR NOT NULL, propensity DOUBLE NOT NULL, model_id VARCHAR, decided_at TIMESTAMP,
  supersedes VARCHAR, superseded BOOLEAN NOT NULL, policy_arm VARCHAR, holdout BOOLEAN,
  source VARCHAR, imported_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS api_keys (
  key_sha256 VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, created TIMESTAMP NOT NULL,
  revoked TIMESTAMP
);
ALTER TABLE models ADD COLUMN IF NOT EXISTS digest VARCHAR;
ALTER TABLE experiment_log ADD COLUMN IF NOT EXISTS delivered TINYINT;
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS policy_arm VARCHAR;
"""

#: What a standing decision says about its order.
STANDING_COLUMNS = ("order_id", "arm", "propensity", "policy_arm", "holdout", "model_id", "week")
# The standing decision of every order: the newest week's, and within a week the service's
# (taken when the order's signals changed, after the weekly queue) over the queue's; among the
# service's, the newest that no later one superseded.
STANDING_DECISIONS = f"""
SELECT {", ".join(STANDING_COLUMNS)}, decided_at FROM (
  SELECT {", ".join(STANDING_COLUMNS)}, 0 AS served, NULL::TIMESTAMP AS decided_at,
         NULL AS decision_id FROM assignments
  UNION ALL
  SELECT {", ".join(STANDING_COLUMNS)}, 1 AS served, decided_at, decision_id
  FROM decisions WHERE NOT superseded
) QUALIFY row_number() OVER (PARTITION BY order_id
  ORDER BY week DESC, served DESC, decided_at DESC NULLS LAST, decision_id DESC) = 1
"""

#: Fields of a journal record the store keeps (``uplift serve`` writes more, e.g. net value).
JOURNAL_FIELDS = (
    "decision_id",
    "order_id",
    "week",
    "arm",
    "propensity",
    "model_id",
    "decided_at",
    "supersedes",
    "policy_arm",
    "holdout",
)
_REQUIRED_JOURNAL_FIELDS = ("decision_id", "order_id", "week", "arm", "propensity")
#: Names of API keys: what the `uplift keys` command and the service's log show.
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: Creating a key checks for a live key of the same name, then inserts: one thread at a time.
_KEYS_LOCK = threading.Lock()

# Numbers compared when an order arrives a second time: a CSV round trip may move a float in
# its last digits, hence a relative tolerance far above rounding and far below any real edit.
_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest did: rows read, rows new to the store, and the weeks they belong to."""

    source: str
    n_rows: int
    n_new: int
    weeks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One row of the model registry; ``promoted_week`` is None for a model never promoted."""

    model_id: str
    week: str
    learner: str
    path: str
    card: Mapping[str, Any]
    policy_value: float
    policy_value_se: float
    promoted_week: str | None
    digest: str | None = None


def default_journal(store: str | Path) -> Path:
    """Where ``uplift serve`` keeps its journal when not told: beside the store."""
    return Path(store).parent / JOURNAL_NAME


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, so an inbox file already ingested is skipped without reading."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Store:
    """The DuckDB file of the weekly loop; each method opens a short connection of its own."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting while another process holds it, and create the tables.

        A DuckDB error inside the block becomes a :class:`StoreError` naming the file.
        """
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no store here; run `uplift ingest LOG` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only)
        try:
            if not read_only:
                con.execute(SCHEMA)
                con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
                )
            yield con
        except duckdb.Error as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise StoreError(f"{self.path}: the store refused the operation: {first}") from None
        finally:
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection, retried with growing pauses while another process holds the lock."""
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise StoreError(f"{self.path}: cannot open the store: {error}") from None
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{self.path}: another process has held the store for {self.timeout:g} s; "
                        "wait for it to finish (or pass a longer timeout) and run again"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except duckdb.Error as error:
                raise StoreError(f"{self.path}: not a readable store: {error}") from None

    # ------------------------------------------------------------------ experiment logs
    def ingest(
        self, log: ExperimentLog, *, week: str | None = None, sha256: str | None = None
    ) -> IngestResult:
        """Append the orders of ``log`` that the store does not hold yet, in one transaction.

        An order already stored exactly as it comes is skipped, so ingesting a file twice
        changes nothing. An order stored with any other value (arm, outcome, order value,
        propensity, week, a feature) is a conflict: :class:`StoreError` names the orders and
        columns, and nothing of ``log`` is written. ``week`` labels every row when the log has
        no ``assigned_at``. Order ids keep one kind per store (integer or text).
        """
        incoming = _incoming_frame(log, week)
        weeks = tuple(sorted(incoming["week"].unique()))
        kind = order_id_kind(log.frame["order_id"])
        existed = self.path.exists()
        try:
            with self.connect() as con:
                n_new = self._ingest(con, log, incoming, kind, sha256, weeks)
        except BaseException:
            if not existed:  # a refused first ingest leaves no store behind
                for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                    leftover.unlink(missing_ok=True)
            raise
        return IngestResult(log.source, len(incoming), n_new, weeks)

    def _ingest(
        self,
        con: duckdb.DuckDBPyConnection,
        log: ExperimentLog,
        incoming: pd.DataFrame,
        kind: str,
        sha256: str | None,
        weeks: tuple[str, ...],
    ) -> int:
        if not log.propensity_given:
            incoming = _decided_propensities(con, incoming)
        with _transaction(con, incoming=incoming):
            self._check_control(con, log.control)
            self._check_id_kind(con, kind, log.source)
            _add_feature_columns(con, incoming, log.source)
            _check_conflicts(con, log.source, list(incoming.columns))
            n_new = _count_new(con)
            if n_new:
                ingest_id = _next_id(con)
                con.execute(
                    "INSERT INTO experiment_log BY NAME SELECT i.*, ? AS ingest_id "
                    "FROM incoming i ANTI JOIN experiment_log e USING (order_id)",
                    [ingest_id],
                )
                con.execute(
                    "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                    [
                        ingest_id,
                        log.source,
                        sha256,
                        log.control,
                        len(incoming),
                        n_new,
                        ",".join(weeks),
                    ],
                )
        return n_new

    def _check_id_kind(self, con: duckdb.DuckDBPyConnection, kind: str, source: str) -> None:
        row = con.execute("SELECT value FROM meta WHERE key = 'order_id_kind'").fetchone()
        if row is None:
            con.execute("INSERT INTO meta VALUES ('order_id_kind', ?)", [kind])
        elif row[0] != kind:
            raise StoreError(
                f"{source}: this store's order ids are {row[0]}s but this log's are {kind}s "
                f'("0017" and 17 would be different orders); write the ids as {row[0]}s'
            )

    def ingested_hashes(self) -> set[str]:
        """Content hashes of the files already ingested."""
        if not self.path.exists():
            return set()
        with self.connect(read_only=True) as con:
            rows = con.execute("SELECT sha256 FROM ingests WHERE sha256 IS NOT NULL").fetchall()
        return {row[0] for row in rows}

    def weeks(self) -> list[str]:
        """Weeks that hold orders, oldest first."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute("SELECT DISTINCT week FROM experiment_log ORDER BY week").fetchall()
        return [row[0] for row in rows]

    def control(self) -> str:
        """The control arm every ingested log agreed on."""
        with self.connect(read_only=True) as con:
            row = con.execute("SELECT control FROM ingests LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"{self.path}: the store holds no orders yet; run `uplift ingest`")
        return str(row[0])

    def log_frame(self, weeks: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored orders of ``weeks`` (all when None), canonical columns then features.

        Feature columns that are NULL on every selected order (brought by other weeks' logs)
        are left out, and ``ingest_id`` too: it is bookkeeping, not data.
        """
        with self.connect(read_only=True) as con:
            if weeks is None:
                frame = con.execute("SELECT * FROM experiment_log ORDER BY week, order_id").df()
            else:
                frame = con.execute(
                    "SELECT * FROM experiment_log WHERE list_contains(?, week) "
                    "ORDER BY week, order_id",
                    [list(weeks)],
                ).df()
        frame = frame.drop(columns="ingest_id").dropna(axis="columns", how="all")
        return frame.reset_index(drop=True)

    def cancel_rates(self, arm: str, through: str | None = None) -> pd.DataFrame:
        """Per week up to ``through`` (all when None): orders of ``arm`` and their cancel rate."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "SELECT week, count(*) AS orders, avg(1 - retained) AS cancel_rate "
                "FROM experiment_log WHERE arm = ? AND (? IS NULL OR week <= ?) "
                "GROUP BY week ORDER BY week",
                [arm, through, through],
            ).df()

    def read_log(self, weeks: Sequence[str] | None = None) -> ExperimentLog:
        """The stored orders of ``weeks`` as an :class:`~uplift.data.log.ExperimentLog`."""
        frame = self.log_frame(weeks)
        if frame.empty:
            chosen = "any week" if weeks is None else ", ".join(weeks)
            raise StoreError(f"{self.path}: no orders stored for {chosen}")
        label = "all weeks" if weeks is None else ",".join(weeks)
        return ExperimentLog.from_frame(
            frame.drop(columns="week"), control=self.control(), source=f"{self.path}[{label}]"
        )

    def _check_control(self, con: duckdb.DuckDBPyConnection, control: str) -> None:
        row = con.execute("SELECT control FROM ingests LIMIT 1").fetchone()
        if row is not None and row[0] != control:
            raise StoreError(
                f"{self.path}: the store's control arm is {row[0]!r} but this log's is "
                f"{control!r}; pass --control {row[0]} (or use another store)"
            )

    # ------------------------------------------------------------------ model registry
    def register_model(self, record: ModelRecord) -> None:
        """Add a model to the registry (a model of the same id is replaced)."""
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO models (model_id, week, learner, path, card, policy_value, "
                "policy_value_se, promoted_week, digest, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                [
                    record.model_id,
                    record.week,
                    record.learner,
                    record.path,
                    json.dumps(to_json_ready(dict(record.card))),
                    record.policy_value,
                    record.policy_value_se,
                    record.promoted_week,
                    record.digest,
                ],
            )

    def champion(self, before: str | None = None) -> ModelRecord | None:
        """The model promoted most recently (before week ``before``), or None."""
        promoted = [
            m
            for m in self.models()
            if m.promoted_week is not None and (before is None or m.promoted_week < before)
        ]
        return max(promoted, key=lambda m: m.promoted_week or "") if promoted else None

    def models(self) -> list[ModelRecord]:
        """Every registered model, oldest week first."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT model_id, week, learner, path, card, policy_value, policy_value_se, "
                "promoted_week, digest FROM models ORDER BY week, created_at"
            ).fetchall()
        return [
            ModelRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8])
            for r in rows
        ]

    # ------------------------------------------------------------------ queues and reports
    def save_assignment(self, week: str, model_id: str, queue: pd.DataFrame) -> None:
        """Store the ranked queue of ``week``, replacing an earlier one for that week."""
        if "policy_arm" not in queue.columns:  # a queue ranked before intents were recorded
            queue = queue.assign(policy_arm=None)
        missing = [c for c in QUEUE_COLUMNS if c not in queue.columns]
        if missing:
            raise SchemaError(
                f"queue for {week}: missing column(s) {', '.join(missing)}; "
                f"a queue has {', '.join(QUEUE_COLUMNS)}"
            )
        rows = queue[list(QUEUE_COLUMNS)].assign(order_id=queue["order_id"].astype(str))
        with self.connect() as con, _transaction(con, queue_rows=rows):
            con.execute("DELETE FROM assignments WHERE week = ?", [week])
            con.execute(
                "INSERT INTO assignments BY NAME SELECT ? AS week, ? AS model_id, * "
                "FROM queue_rows",
                [week, model_id],
            )

    def assignment(self, week: str) -> pd.DataFrame:
        """The queue stored for ``week`` (empty when none)."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "SELECT * FROM assignments WHERE week = ? ORDER BY rank", [week]
            ).df()

    def decisions(self, weeks: Sequence[str]) -> pd.DataFrame:
        """The policy's decision for every stored order of ``weeks`` that had one.

        Columns ``order_id`` (as the log frame spells it), ``decided_arm`` (the arm the queue
        or the service gave), ``policy_arm`` (the arm the policy intended), ``holdout`` and
        ``decided_by`` (the model that decided). An order decided more than once has its
        standing decision (``STANDING_DECISIONS``): the service's imported decisions count.
        """
        with self.connect(read_only=True) as con:
            frame = con.execute(
                "SELECT e.order_id, a.arm AS decided_arm, a.policy_arm, a.holdout, "
                f"a.model_id AS decided_by FROM experiment_log e JOIN ({STANDING_DECISIONS}) a "
                "USING (order_id) WHERE list_contains(?, e.week)",
                [list(weeks)],
            ).df()
        return frame

    def standing_decisions(self, order_ids: Sequence[str]) -> pd.DataFrame:
        """The standing decision of each of ``order_ids`` that has one (see
        ``STANDING_DECISIONS``): ``order_id, arm, propensity, policy_arm, holdout, model_id,
        week, decided_at`` (NULL for a weekly queue's)."""
        ids = pd.DataFrame({"order_id": pd.Series(order_ids, dtype=object).astype(str)})
        if not self.path.exists():
            return pd.DataFrame(columns=[*STANDING_COLUMNS, "decided_at"])
        with self.connect(read_only=True) as con:
            con.register("wanted_ids", ids)
            try:
                return con.execute(
                    f"SELECT a.* FROM ({STANDING_DECISIONS}) a "
                    "SEMI JOIN wanted_ids w USING (order_id) ORDER BY order_id"
                ).df()
            finally:
                con.unregister("wanted_ids")

    def record_report(self, week: str, path: str | Path, headline: Mapping[str, Any]) -> None:
        """Remember that the report of ``week`` was written to ``path``."""
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO reports VALUES (?, ?, current_timestamp, ?)",
                [week, str(path), json.dumps(to_json_ready(dict(headline)))],
            )

    def reports(self) -> pd.DataFrame:
        """Every report written, oldest week first."""
        if not self.path.exists():
            return pd.DataFrame(columns=["week", "path", "created_at", "headline"])
        with self.connect(read_only=True) as con:
            return con.execute("SELECT * FROM reports ORDER BY week").df()

    # ------------------------------------------------------------------ the decision service
    def save_prices(self, week: str, prices: Mapping[str, float]) -> None:
        """Store the capacity shadow price of each arm in ``week``'s allocation, replacing the
        week's earlier prices. Prices are finite numbers >= 0 (0: the capacity did not bind)."""
        week = check_week(week, "week")
        bad = {
            arm: price
            for arm, price in prices.items()
            if not isinstance(arm, str)
            or isinstance(price, bool)
            or not isinstance(price, int | float)
            or not (math.isfinite(price) and price >= 0)
        }
        if bad:
            raise ConfigError(f"shadow prices of {week} must be finite numbers >= 0; got {bad}")
        rows = pd.DataFrame(
            {"arm": list(prices), "price": [float(v) for v in prices.values()]},
            columns=["arm", "price"],
        ).astype({"arm": object, "price": np.float64})
        with self.connect() as con, _transaction(con, price_rows=rows):
            con.execute("DELETE FROM prices WHERE week = ?", [week])
            con.execute(
                "INSERT INTO prices SELECT ?, arm, price, current_timestamp FROM price_rows",
                [week],
            )

    def prices(self, week: str | None = None) -> dict[str, float]:
        """The shadow prices of the newest week that has some (up to ``week``); {} when none."""
        if not self.path.exists():
            return {}
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT arm, price FROM prices WHERE week = ("
                "  SELECT max(week) FROM prices WHERE ? IS NULL OR week <= ?"
                ") ORDER BY arm",
                [week, week],
            ).fetchall()
        return {str(arm): float(price) for arm, price in rows}

    def import_journal(self, path: str | Path) -> int:
        """Import the decisions of a service journal; return how many were new.

        Decisions are keyed by ``decision_id``, so importing a journal twice (or a journal
        that grew since) adds only the decisions not stored yet. Every stored decision that a
        later one supersedes is marked ``superseded``. A torn last line (the service was killed
        while writing it) is skipped; any other damaged line is refused.
        """
        rows = _decision_rows(read_journal(path), str(path))
        if rows.empty:
            return 0
        with self.connect() as con, _transaction(con, journal_rows=rows):
            found = con.execute(
                "SELECT count(*) FROM journal_rows j ANTI JOIN decisions d USING (decision_id)"
            ).fetchone()
            con.execute(
                "INSERT INTO decisions BY NAME SELECT j.*, false AS superseded, "
                "? AS source, current_timestamp AS imported_at "
                "FROM journal_rows j ANTI JOIN decisions d USING (decision_id)",
                [str(path)],
            )
            con.execute(
                "UPDATE decisions SET superseded = true WHERE NOT superseded AND decision_id "
                "IN (SELECT supersedes FROM decisions WHERE supersedes IS NOT NULL)"
            )
        return int(found[0]) if found else 0

    def served_decisions(self, weeks: Sequence[str] | None = None) -> pd.DataFrame:
        """The service's standing decision per order of ``weeks`` (all when None).

        One row per ``order_id``: its newest decision that no later one superseded, with
        ``decision_id, week, arm, propensity, policy_arm, holdout, model_id, decided_at``, to
        join outcomes to the arm and propensity that decided them.
        """
        columns = "order_id, decision_id, week, arm, propensity, policy_arm, holdout, model_id, "
        if not self.path.exists():
            return pd.DataFrame(columns=[c.strip() for c in (columns + "decided_at").split(",")])
        chosen = "true" if weeks is None else "list_contains(?, week)"
        with self.connect(read_only=True) as con:
            return con.execute(
                f"SELECT {columns} decided_at FROM decisions WHERE NOT superseded AND {chosen} "
                "QUALIFY row_number() OVER (PARTITION BY order_id "
                "  ORDER BY decided_at DESC, decision_id DESC) = 1 "
                "ORDER BY order_id",
                [] if weeks is None else [list(weeks)],
            ).df()

    def create_key(self, name: str) -> str:
        """A new API key for the client ``name``: returned once, stored only as its SHA-256.

        A name that already has a live (not revoked) key is refused: revoke it first.
        """
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise ConfigError(
                f"key name {name!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        key = "uk_" + secrets.token_urlsafe(32)
        with _KEYS_LOCK, self.connect() as con:
            live = con.execute(
                "SELECT count(*) FROM api_keys WHERE name = ? AND revoked IS NULL", [name]
            ).fetchone()
            if live and live[0]:
                raise ConfigError(
                    f"{self.path}: a live key named {name!r} exists; revoke it first "
                    f"(uplift keys revoke {name}) or choose another name"
                )
            con.execute(
                "INSERT INTO api_keys VALUES (?, ?, current_timestamp, NULL)",
                [_key_hash(key), name],
            )
        return key

    def revoke_key(self, name: str) -> None:
        """Revoke the live key of ``name``: requests carrying it are refused from now on."""
        with _KEYS_LOCK, self.connect() as con:
            revoked = con.execute(
                "UPDATE api_keys SET revoked = current_timestamp "
                "WHERE name = ? AND revoked IS NULL RETURNING name",
                [name],
            ).fetchall()
        if not revoked:
            raise ConfigError(f"{self.path}: no live key named {name!r}; see uplift keys list")

    def keys(self) -> pd.DataFrame:
        """Every key ever created: ``name``, ``created``, ``revoked`` (NaT while live)."""
        if not self.path.exists():
            return pd.DataFrame(columns=["name", "created", "revoked"])
        with self.connect(read_only=True) as con:
            return con.execute(
                "SELECT name, created, revoked FROM api_keys ORDER BY created, name"
            ).df()

    def key_name(self, key: str) -> str | None:
        """The name of the live key ``key``; None for an unknown or revoked key.

        The key's hash is compared with every live key's in constant time, so the time taken
        tells nothing about how close a guess came.
        """
        if not isinstance(key, str) or not key or not self.path.exists():
            return None
        digest = _key_hash(key).encode()
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT name, key_sha256 FROM api_keys WHERE revoked IS NULL"
            ).fetchall()
        found = None
        for name, stored in rows:
            if hmac.compare_digest(digest, str(stored).encode()):
                found = str(name)
        return found


@contextmanager
def _transaction(
    con: duckdb.DuckDBPyConnection, **frames: pd.DataFrame
) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction over ``con`` with ``frames`` registered as views by their names.

    Everything in the block is committed together or rolled back together; the views are
    dropped either way.
    """
    for name, frame in frames.items():
        con.register(name, frame)
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in frames:
            con.unregister(name)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines decision journal, oldest first.

    Every record is one JSON object on a line ending in a newline. A last line without its
    newline is a write cut short by a crash (its append never returned): it is left out.
    Anything else that is not a JSON object is refused with a :class:`SchemaError` naming the
    line, since a journal damaged in the middle cannot be trusted to be complete.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise StoreError(f"{path}: cannot read the journal: {error.strerror or error}") from None
    lines = raw.split(b"\n")
    lines.pop()  # b"" after the final newline, or the torn tail of an interrupted write
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            raise SchemaError(
                f"{path}: line {number} is not a JSON record; a journal is damaged only in its "
                "last line by a crash, so this file was edited or is not a journal"
            )
        records.append(record)
    return records


def _decision_rows(records: Sequence[Mapping[str, Any]], source: str) -> pd.DataFrame:
    """The journal's records as rows of the ``decisions`` table, checked."""
    missing = [
        k + 1
        for k, record in enumerate(records)
        if any(record.get(name) is None for name in _REQUIRED_JOURNAL_FIELDS)
    ]
    if missing:
        raise SchemaError(
            f"{source}: records without {', '.join(_REQUIRED_JOURNAL_FIELDS)} in "
            f"{describe_rows(missing)} (line numbers); not a decision journal"
        )
    frame = pd.DataFrame(
        {name: [record.get(name) for record in records] for name in JOURNAL_FIELDS},
        columns=list(JOURNAL_FIELDS),
    )
    text = ["decision_id", "order_id", "week", "arm", "model_id", "supersedes", "policy_arm"]
    for name in text:
        frame[name] = frame[name].map(lambda v: None if v is None else str(v)).astype(object)
    propensity = pd.to_numeric(frame["propensity"], errors="coerce")
    bad = ~((propensity > 0) & (propensity <= 1)).to_numpy()
    if bad.any():
        raise SchemaError(
            f"{source}: propensity must be in (0, 1]; not so in "
            f"{describe_rows(np.flatnonzero(bad) + 1)} (line numbers)"
        )
    frame["propensity"] = propensity.astype(np.float64)
    decided = pd.to_datetime(frame["decided_at"], errors="coerce", utc=True, format="ISO8601")
    frame["decided_at"] = decided.dt.tz_convert(None)
    frame["holdout"] = frame["holdout"].map(lambda v: None if v is None else bool(v))
    frame["holdout"] = frame["holdout"].astype("boolean")
    return frame.drop_duplicates("decision_id").reset_index(drop=True)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _incoming_frame(log: ExperimentLog, week: str | None) -> pd.DataFrame:
    """The log's frame in the store's layout: text order ids and a week label per row."""
    frame = log.frame.copy()
    if not log.has_retained:
        raise SchemaError(
            f"{log.source}: the log has no cancelled or retained column; the store keeps "
            "logs with outcomes only"
        )
    if week is not None:
        frame["week"] = check_week(week)
    elif "assigned_at" in frame.columns:
        frame["week"] = list(log.weeks())
    else:
        raise SchemaError(
            f"{log.source}: no assigned_at column to tell the week of each order; "
            "pass the week explicitly (--week YYYY-Www)"
        )
    frame["order_id"] = frame["order_id"].astype(str)
    # DuckDB's column names ignore case, so "Week" would land in the store's own column.
    reserved = sorted(f for f in log.features if f.casefold() in {"week", "ingest_id"})
    if reserved:
        raise SchemaError(
            f"{log.source}: feature column(s) {', '.join(reserved)} clash with the store's own "
            "columns week and ingest_id; rename them in the file"
        )
    return frame


def _decided_propensities(con: duckdb.DuckDBPyConnection, incoming: pd.DataFrame) -> pd.DataFrame:
    """A log without propensities takes them from the stored decisions of its orders.

    Only where the logged arm is the decided one: the decision's propensity is that arm's.
    Other orders keep the arm's share of the log (uniform randomisation assumed).
    """
    if not con.execute(
        "SELECT (SELECT count(*) FROM assignments) + (SELECT count(*) FROM decisions)"
    ).fetchall()[0][0]:
        return incoming
    con.register("incoming_ids", incoming[["order_id", "arm"]])
    try:
        decided = con.execute(
            "SELECT i.order_id, a.propensity AS decided FROM incoming_ids i "
            f"JOIN ({STANDING_DECISIONS}) a ON a.order_id = i.order_id AND a.arm = i.arm"
        ).df()
    finally:
        con.unregister("incoming_ids")
    by_order = decided.set_index("order_id")["decided"]
    found = incoming["order_id"].map(by_order)
    return incoming.assign(propensity=found.fillna(incoming["propensity"]).astype(float))


def _check_conflicts(con: duckdb.DuckDBPyConnection, source: str, columns: Sequence[str]) -> None:
    """Raise when an incoming order is stored with any other value, naming orders and columns.

    Numbers agree within a relative tolerance (see ``_RELATIVE_TOLERANCE``); everything else,
    missing values included, must be equal.
    """
    stored = _stored_types(con)
    compared = [c for c in columns if c not in ("order_id", "ingest_id") and c in stored]
    differs = {c: _differs(c, stored[c]) for c in compared}
    flags = ", ".join(
        f"{expr} AS {quote_identifier('d' + str(k))}" for k, expr in enumerate(differs.values())
    )
    # Every name in this query went through quote_identifier.
    query = (
        f"SELECT i.order_id, {flags} FROM incoming i JOIN experiment_log e USING (order_id) "
        f"WHERE {' OR '.join(differs.values())} ORDER BY i.order_id"
    )
    found = con.execute(query).df()
    if found.empty:
        return
    changed = [c for k, c in enumerate(compared) if found[f"d{k}"].any()]
    raise StoreError(
        f"{source}: {describe_rows(found['order_id'])} are already stored with another "
        f"{', '.join(changed)}; nothing of this log was written. Fix the log (or the store) and "
        "ingest again"
    )


def _differs(column: str, stored_type: str) -> str:
    """SQL that is true when the incoming and stored values of ``column`` differ."""
    q = quote_identifier(column)
    if _storage_type(stored_type) == "DOUBLE":
        return (
            f"(i.{q} IS DISTINCT FROM e.{q} AND coalesce(abs(i.{q} - e.{q}) > "
            f"{_RELATIVE_TOLERANCE!r} * greatest(abs(i.{q}), abs(e.{q}), 1), true))"
        )
    return f"i.{q} IS DISTINCT FROM e.{q}"


def _stored_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'experiment_log'"
        ).fetchall()
    )


def _count_new(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(
        "SELECT count(*) FROM incoming i ANTI JOIN experiment_log e USING (order_id)"
    ).fetchone()
    return int(row[0]) if row else 0


def _next_id(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchone()
    return int(row[0]) if row else 1


def _add_feature_columns(
    con: duckdb.DuckDBPyConnection, incoming: pd.DataFrame, source: str
) -> None:
    """Add a column for each feature the store has not seen; reject a feature whose type changed.

    Features are stored as DOUBLE, VARCHAR, BOOLEAN or TIMESTAMP, so that one week's integer
    column and the next week's float column (or two category sets) land in the same column.
    """
    stored = _stored_types(con)
    by_case = {name.casefold(): name for name in stored}
    described = con.execute("DESCRIBE SELECT * FROM incoming").fetchall()
    for name, kind, *_ in described:
        if name in LOG_COLUMNS:
            continue
        known = by_case.get(name.casefold())
        if known is None:
            statement = (
                f"ALTER TABLE experiment_log ADD COLUMN {quote_identifier(name)} "
                f"{_storage_type(kind)}"
            )
            con.execute(statement)
        elif known != name:
            raise StoreError(
                f"{source}: feature {name!r} differs only in case from the stored feature "
                f"{known!r}; write it as {known!r}"
            )
        elif _storage_type(stored[name]) != _storage_type(kind):
            raise StoreError(
                f"{source}: feature {name!r} is {kind} here but {stored[name]} in the store; "
                "convert it to the stored type before ingesting"
            )


def _storage_type(kind: str) -> str:
    """The column type a feature of DuckDB type ``kind`` is stored as."""
    kind = kind.upper()
    if kind in {"VARCHAR", "TEXT", "STRING"} or kind.startswith("ENUM"):
        return "VARCHAR"
    if kind == "BOOLEAN":
        return "BOOLEAN"
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return "TIMESTAMP"
    return "DOUBLE"
