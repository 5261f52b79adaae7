"""Outcomes of decided orders: a log without an arm column takes each order's decision.

A shop that acts on the weekly queue or on ``uplift serve``'s answers later knows, per order,
only whether it was kept. Such a log (``order_id``, the outcome, the signals) finds its arm,
its propensity and its time in the store: the order's standing decision
(:data:`~uplift.loop.store.STANDING_DECISIONS`, the service's imported journal included).
A log that has an arm column keeps it; where its arm is the decided one and it has no
propensity, ingest takes the decision's propensity (:meth:`Store.ingest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data.log import CONTROL, ColumnMap, ExperimentLog, read_frame
from uplift.exceptions import ConfigError, SchemaError, describe_rows
from uplift.loop.store import Store, default_journal

__all__ = ["JournalImport", "import_journal", "read_outcomes", "with_decisions"]


@dataclass(frozen=True, slots=True)
class JournalImport:
    """The journal imported and how many of its decisions were new to the store."""

    path: Path
    n_new: int


def import_journal(store: Store, journal: Path | None = None) -> JournalImport | None:
    """Import the service's journal into ``store`` (idempotent by decision id).

    ``journal`` must exist when given; when not, the journal beside the store is imported if
    there is one (None when there is none). The service may be writing it meanwhile: a torn
    last line is left for the next import.
    """
    if journal is None:
        journal = default_journal(store.path)
        if not journal.is_file():
            return None
    elif not journal.is_file():
        raise ConfigError(f"{journal}: no decision journal here (--journal)")
    return JournalImport(journal, store.import_journal(journal))


def read_outcomes(
    path: str | Path,
    store: Store,
    *,
    column_map: ColumnMap | None = None,
    control: str = CONTROL,
) -> ExperimentLog:
    """Read a log as :func:`~uplift.data.log.read_log` does; without an arm column, each order
    takes its arm, propensity and time from its standing decision in ``store``."""
    source = str(path)
    column_map = column_map or ColumnMap()
    frame = read_frame(path, id_column=column_map.mapping.get("order_id", "order_id"))
    mapped = column_map.apply(frame, source)
    if "arm" not in mapped.columns:
        mapped = with_decisions(mapped, store, source)
    return ExperimentLog.from_frame(mapped, control=control, source=source)


def with_decisions(frame: pd.DataFrame, store: Store, source: str) -> pd.DataFrame:
    """``frame`` (canonical names, no ``arm``) with each order's decided arm, and its
    propensity and ``assigned_at`` where the frame has none.

    ``assigned_at`` is the service's decision time, or the start (Monday 00:00 UTC) of the
    week of a weekly queue's decision. Orders without a decision are refused by row.
    """
    if "order_id" not in frame.columns:
        raise SchemaError(
            f"{source}: no arm column and no order_id column; outcomes are joined to their "
            "decisions by order id (or give the arm with --map arm=COLUMN)"
        )
    ids = frame["order_id"].astype(str)
    decided = store.standing_decisions(ids.unique().tolist()).set_index("order_id")
    undecided = ~ids.isin(decided.index).to_numpy()
    if undecided.any():
        rows = describe_rows(np.flatnonzero(undecided) + 1)
        raise SchemaError(
            f"{source}: no arm column, and {store.path} holds no decision for the orders in "
            f"{rows}; import the service's journal (--journal) or rank them in a weekly queue "
            "first, or give the arm with --map arm=COLUMN"
        )
    out = frame.copy()
    out["arm"] = ids.map(decided["arm"]).to_numpy()
    if "propensity" not in out.columns:
        out["propensity"] = ids.map(decided["propensity"]).astype(np.float64).to_numpy()
    if "assigned_at" not in out.columns:
        weeks = decided["week"].map(_week_start)
        when = pd.to_datetime(decided["decided_at"]).fillna(weeks)
        out["assigned_at"] = ids.map(when).to_numpy()
    return out


def _week_start(week: str) -> pd.Timestamp:
    year, number = week.split("-W")
    return pd.Timestamp(datetime.fromisocalendar(int(year), int(number), 1))
