"""Check a log where it lies and describe it as SQL, without loading its rows.

:func:`scan_file` reads a Parquet or CSV log with DuckDB and runs the checks that
:func:`uplift.data.log.read_log` runs, as aggregate queries: columns and their types, empty
order ids and arms, duplicate ids, arm labels (every distinct label, read once), 0/1 outcomes,
finite non-negative money, propensities in [1e-4, 1], 0/1 deliveries, features that are
entirely missing or constant, arms of fewer than 50 orders. When every check passes it returns
a :class:`LogTable` whose canonical columns are SQL over the file. When any check fails, or the
log holds something these checks do not read the way pandas does (an epoch or zoned time, a
decimal, a nested value, a label with odd spaces), it returns None: the caller then reads the
log as before, and the same validation as always raises the same one-line message naming the
file, column and rows. Checks decide here; the pandas reader words the error.

:func:`columns_and_checks` is shared with :mod:`uplift.spark.readout`, where the same checks run
as Spark SQL and a failed one is raised directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from uplift.data import normalize
from uplift.data.log import CANONICAL, MIN_ARM_ROWS, ColumnMap, ExperimentLog
from uplift.exceptions import DataWarning, UpliftError
from uplift.experiment.logtable import DUCKDB, Dialect, Kind, LogTable, Runner, duckdb_frame_table

__all__ = [
    "PANDAS_MISSING",
    "Problem",
    "columns_and_checks",
    "duckdb_kind",
    "scan_file",
    "table_from_log",
]

#: The strings pandas.read_csv reads as missing by default; DuckDB is told the same.
PANDAS_MISSING = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
_INTEGER_TEXT = r"^(?:[+-]?(0|[1-9][0-9]{0,17})(\.0+)?)$"
# A file with more distinct arm labels than this is no experiment log (a wrong --map): the
# pandas reader says what is wrong with it.
_MAX_ARMS = 1000
_NUMBER = ("numeric",)
# Which kinds each canonical column may have on this path (others: the pandas reader).
_ALLOWED: dict[str, tuple[Kind, ...]] = {
    "order_id": ("numeric", "text"),
    "arm": ("numeric", "text", "bool"),
    "cancelled": ("numeric", "bool"),
    "retained": ("numeric", "bool"),
    "order_value": _NUMBER,
    "revenue": _NUMBER,
    "propensity": _NUMBER,
    "delivered": ("numeric", "bool"),
    "assigned_at": ("time",),
}
_FEATURE_KINDS = ("numeric", "bool", "text", "time")


#: What each failed check means, in the words of the pandas reader (without its row list).
_MESSAGES = {
    "order_id:empty": "column order_id is empty",
    "order_id:whole": "column order_id holds numbers that are not whole ids",
    "order_id:spaces": "column order_id holds ids with surrounding spaces or empty ids",
    "order_id:duplicate": "column order_id has duplicate ids",
    "order_id:integer_duplicate": "column order_id has duplicate ids",
    "arm:empty": "column arm is empty",
    "cancelled:binary": "column cancelled must be 0 or 1",
    "retained:binary": "column retained must be 0 or 1",
    "retained:disagree": "columns cancelled and retained disagree (retained must be 1 - cancelled)",
    "order_value:finite": "column order_value must be a finite number >= 0",
    "revenue:finite": "column revenue must be a finite number >= 0",
    "propensity:range": f"column propensity must lie in [{normalize.MIN_PROPENSITY:g}, 1]",
    "delivered:binary": "column delivered must be 0, 1 or missing",
    "assigned_at:range": "column assigned_at holds times before 1677 or after 2262",
}


@dataclass(frozen=True)
class Problem:
    """A check that failed: the column and what is wrong, in the pandas reader's words."""

    column: str
    message: str


def duckdb_kind(sql_type: str) -> Kind:
    """How a DuckDB column type is read: numeric, bool, text, time, or other (not here)."""
    name = sql_type.upper()
    if name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT"):
        return "numeric"
    if name in ("UINTEGER", "FLOAT", "DOUBLE"):
        return "numeric"
    if name == "BOOLEAN":
        return "bool"
    if name == "VARCHAR":
        return "text"
    # Naive times only: a zoned time is converted to UTC (with a note) by the pandas reader.
    if name in ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"):
        return "time"
    return "other"


def scan_file(
    path: str | Path,
    *,
    column_map: ColumnMap | None = None,
    control: str = "control",
) -> LogTable | None:
    """The log at ``path`` as a :class:`LogTable`, or None when the pandas reader must read it.

    Emits the reader's warning when the log has no order ids. Never raises for bad data.
    """
    import duckdb  # noqa: PLC0415 - imported when a readout runs, not on `uplift --help`

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or path.stat().st_size == 0 or suffix not in (".parquet", ".csv"):
        return None
    column_map = column_map or ColumnMap()
    con = duckdb.connect()
    try:
        if suffix == ".parquet":
            relation = con.read_parquet(str(path))
        else:
            id_column = column_map.mapping.get("order_id", "order_id")
            relation = con.read_csv(str(path), na_values=PANDAS_MISSING)
            if id_column in relation.columns:
                # As pandas reads it: ids as text, so that "0017" keeps its zeros.
                as_text = {id_column: "VARCHAR"}
                relation = con.read_csv(str(path), na_values=PANDAS_MISSING, dtype=as_text)
        relation.create_view("src")
        types = map(str, relation.types)
        raw_kinds = {c: duckdb_kind(t) for c, t in zip(relation.columns, types, strict=True)}
    except duckdb.Error:
        return None

    def run(sql: str, params: Sequence[Any]) -> pd.DataFrame:
        return con.execute(sql, list(params)).df()

    try:
        found = columns_and_checks(run, DUCKDB, "src", raw_kinds, column_map, control, str(path))
    except duckdb.Error:
        return None
    if isinstance(found, Problem):
        return None
    for note in found.notes:
        if note.endswith("no order_id column; row numbers are used as order ids"):
            warnings.warn(note, DataWarning, stacklevel=2)
    return found


def columns_and_checks(
    run: Runner,
    dialect: Dialect,
    relation: str,
    raw_kinds: Mapping[str, Kind],
    column_map: ColumnMap,
    control: str,
    source: str,
    *,
    lenient: bool = False,
) -> LogTable | Problem:
    """Check the raw table ``relation`` (columns of ``raw_kinds``) and describe it as a log.

    Returns the first :class:`Problem` found, or the :class:`LogTable`. ``lenient`` warns as
    the reader does about a dead feature (and leaves it out) or a small arm; otherwise those
    are problems too, left to the reader so that it warns in its own words.
    """
    header = pd.DataFrame(columns=list(raw_kinds))
    try:
        mapped = column_map.apply(header, source)
        names = normalize.column_names(mapped.columns, source)
    except UpliftError as error:
        return Problem("", str(error))
    # canonical or feature name -> raw column (None: the constant order value)
    raw = {name: (name if name in raw_kinds else None) for name in names}
    raw.update({c: s for c, s in column_map.mapping.items() if c in raw})
    if "arm" not in raw:
        return Problem("arm", "missing required column 'arm'")
    if not {"cancelled", "retained", "revenue"} & set(raw):
        return Problem("", "no outcome column")
    kinds: dict[str, Kind] = {}
    for name, column in raw.items():
        kind = "numeric" if column is None else raw_kinds[column]
        allowed = _ALLOWED.get(name, _FEATURE_KINDS)
        if kind not in allowed:
            return Problem(name, f"column {name} is of a type this reader leaves to pandas")
        kinds[name] = kind
    q = dialect.quote
    checks = _checks(raw, kinds, dialect)
    sql = ", ".join(f"{expression} AS {q(key)}" for key, (expression, _) in checks.items())
    params = [p for _, ps in checks.values() for p in ps]
    counts = run(f"SELECT count(*) AS n, {sql} FROM {relation}", params).iloc[0]
    rows = int(counts["n"])
    if rows == 0:
        return Problem("", "file has a header but no rows")
    for key in checks:
        bad = int(counts[key]) if key.startswith("bad:") else 0
        if bad > 0:
            what = key.split(":", 1)[1]
            return Problem(what.split(":")[0], f"{_MESSAGES[what]} in {bad} row(s)")
    features = []
    for name in (n for n in raw if n not in CANONICAL):
        missing = int(counts[f"missing:{name}"])
        low, high = counts[f"min:{name}"], counts[f"max:{name}"]
        if missing < rows and not (missing == 0 and low == high):
            features.append(name)
            continue
        if not lenient:  # the reader warns and drops it: left to the reader
            return Problem(name, "entirely missing or constant")
        reason = "entirely missing" if missing == rows else f"constant ({low!r})"
        warnings.warn(
            f"{source}: feature column {name} is {reason}; it is left out of the features",
            DataWarning,
            stacklevel=3,
        )
    arms = _arm_labels(run, relation, q(str(raw["arm"])), source)
    if isinstance(arms, Problem):
        return arms
    labels, counts_by_label, arm_sql, arm_params = arms
    if control not in labels:
        return Problem(
            "arm",
            f"control arm {control!r} not found in column arm; arms present: "
            f"{', '.join(sorted(labels))} (name the control arm with --control)",
        )
    if len(labels) < 2:
        return Problem("arm", f"column arm holds only the control arm {control!r}")
    for arm, n in counts_by_label.items():
        if n >= MIN_ARM_ROWS:
            continue
        if not lenient:  # the reader warns: left to it
            return Problem("arm", "an arm of fewer than MIN_ARM_ROWS orders")
        warnings.warn(
            f"{source}: arm {arm!r} has only {n} rows (fewer than {MIN_ARM_ROWS}); "
            "its estimates will be too noisy to act on",
            DataWarning,
            stacklevel=3,
        )
    columns: dict[str, tuple[str, tuple[Any, ...]]] = {"arm": (arm_sql, arm_params)}
    columns.update(_outcome_columns(raw, kinds, column_map, q))
    propensity_given = "propensity" in raw
    notes: list[str] = []
    if "order_id" not in raw:
        notes.append(f"{source}: no order_id column; row numbers are used as order ids")
    if propensity_given:
        columns["propensity"] = (f"CAST({q(str(raw['propensity']))} AS DOUBLE)", ())
    else:
        # As the reader does: each order's propensity is its arm's share of the log.
        cases = " ".join("WHEN ? THEN ?" for _ in labels)
        shares = [v for a in labels for v in (a, counts_by_label[a] / rows)]
        columns["propensity"] = (
            f"CAST(CASE {arm_sql} {cases} END AS DOUBLE)",
            (*arm_params, *shares),
        )
        notes.append(
            "no propensity column: uniform randomisation assumed, each order's propensity is "
            "its arm's share of the log"
        )
    for name in ("order_id", "delivered", "assigned_at", *features):
        if name in raw and not (name == "order_id" and kinds[name] != "numeric"):
            columns[name] = (q(str(raw[name])), ())
    control_first = (control, *sorted(a for a in labels if a != control))
    return LogTable(
        run, dialect, relation, columns, {n: kinds[n] for n in columns if n in kinds},
        control, control_first, tuple(features), source, propensity_given, rows, tuple(notes),
    )  # fmt: skip


def _number(column: str) -> str:
    return f"CAST({column} AS DOUBLE)"


def _missing(column: str, kind: Kind) -> str:
    """NULL, or NaN in a numeric column: what pandas counts as missing."""
    if kind == "numeric":
        return f"({column} IS NULL OR isnan({_number(column)}))"
    return f"({column} IS NULL)"


def _checks(
    raw: Mapping[str, str | None], kinds: Mapping[str, Kind], dialect: Dialect
) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """Named aggregates over the raw table: ``bad:<column>:<what>`` must all be 0."""
    q = dialect.quote
    count = dialect.count_if
    out: dict[str, tuple[str, tuple[Any, ...]]] = {}

    def col(name: str) -> str:
        return q(str(raw[name]))

    if "order_id" in raw:
        ids, kind = col("order_id"), kinds["order_id"]
        out["bad:order_id:empty"] = (count(_missing(ids, kind)), ())
        distinct = f"count(DISTINCT {ids})"
        if kind == "numeric":
            number = _number(ids)
            whole = f"({number} = round({number}) AND abs({number}) <= 9007199254740992)"
            out["bad:order_id:whole"] = (count(f"NOT {whole}"), ())
            out["bad:order_id:duplicate"] = (f"count(*) - count(DISTINCT {number})", ())
        else:
            match = dialect.matches.format(value=ids)
            # Ids with surrounding spaces are stripped by the reader: left to it.
            odd = f"(trim({ids}) = '' OR {dialect.matches.format(value=ids)})"
            out["bad:order_id:spaces"] = (count(odd), (r"^\s|\s$",))
            out["bad:order_id:duplicate"] = (f"count(*) - {distinct}", ())
            # Ids that all spell integers are read as integers: "17" and "17.0" are one id.
            integer = f"TRY_CAST(regexp_replace({ids}, ?, '') AS DECIMAL(20, 0))"
            out["bad:order_id:integer_duplicate"] = (
                f"CASE WHEN {count(f'NOT {match}')} = 0 THEN count(*) - count(DISTINCT {integer}) "
                "ELSE 0 END",
                (_INTEGER_TEXT, r"\.0+$"),
            )
    out["bad:arm:empty"] = (count(f"{col('arm')} IS NULL"), ())
    for name in ("cancelled", "retained"):
        if name in raw:
            value = f"CAST({col(name)} AS DOUBLE)"
            out[f"bad:{name}:binary"] = (
                count(f"NOT coalesce({value} IN (0, 1), false) OR isnan({value})"),
                (),
            )
    if "cancelled" in raw and "retained" in raw:
        agree = f"CAST({col('retained')} AS DOUBLE) = 1 - CAST({col('cancelled')} AS DOUBLE)"
        out["bad:retained:disagree"] = (count(f"NOT coalesce({agree}, false)"), ())
    for name in ("order_value", "revenue"):
        if name in raw and raw[name] is not None:
            value = _number(col(name))
            # NaN and infinity fail the comparison in both engines; NULL fails coalesce.
            finite = f"coalesce(abs({value}) <= 1.7976931348623157E308 AND {value} >= 0, false)"
            out[f"bad:{name}:finite"] = (count(f"NOT {finite}"), ())
    if "propensity" in raw:
        value = _number(col("propensity"))
        inside = f"({value} >= ? AND {value} <= 1 AND NOT isnan({value}))"
        out["bad:propensity:range"] = (
            count(f"NOT coalesce({inside}, false)"),
            (normalize.MIN_PROPENSITY,),
        )
    if "delivered" in raw:
        value = _number(col("delivered"))
        out["bad:delivered:binary"] = (
            count(f"{value} IS NOT NULL AND NOT isnan({value}) AND {value} NOT IN (0, 1)"),
            (),
        )
    if "assigned_at" in raw:
        # pandas keeps times in nanoseconds: 1677-09-22 to 2262-04-11.
        value = col("assigned_at")
        out["bad:assigned_at:range"] = (
            count(f"{value} < CAST(? AS TIMESTAMP) OR {value} > CAST(? AS TIMESTAMP)"),
            ("1677-09-22 00:00:00", "2262-04-10 00:00:00"),
        )
    for name, column in raw.items():
        if name in CANONICAL or column is None:
            continue
        value, kind = q(column), kinds[name]
        out[f"missing:{name}"] = (count(_missing(value, kind)), ())
        present = f"CASE WHEN NOT {_missing(value, kind)} THEN {value} END"
        out[f"min:{name}"] = (f"min({present})", ())
        out[f"max:{name}"] = (f"max({present})", ())
    return out


def _arm_labels(
    run: Runner, relation: str, arm: str, source: str
) -> Problem | tuple[list[str], dict[str, int], str, tuple[Any, ...]]:
    """Every distinct arm value, labelled as the reader labels it (text, stripped)."""
    found = run(f"SELECT {arm} AS a, count(*) AS n FROM {relation} GROUP BY {arm}", [])
    if len(found) > _MAX_ARMS:
        return Problem("arm", "too many arms")
    try:
        labels = normalize.arm_labels(found["a"], source)
    except UpliftError as error:
        return Problem("arm", str(error))
    counts: dict[str, int] = {}
    for label, n in zip(labels, found["n"], strict=True):
        counts[label] = counts.get(label, 0) + int(n)
    values = [v.item() if hasattr(v, "item") else v for v in found["a"]]
    if all(isinstance(v, str) for v in values) and list(labels) == values:
        return list(counts), counts, arm, ()
    cases = " ".join("WHEN ? THEN ?" for _ in values)
    params = tuple(p for v, label in zip(values, labels, strict=True) for p in (v, label))
    return list(counts), counts, f"(CASE {arm} {cases} END)", params


def _outcome_columns(
    raw: Mapping[str, str | None],
    kinds: Mapping[str, Kind],
    column_map: ColumnMap,
    q: Any,
) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """retained (0/1, as int), order_value and revenue (double), as the reader derives them."""
    out: dict[str, tuple[str, tuple[Any, ...]]] = {}
    if "retained" in raw:
        out["retained"] = (f"CAST(CAST({q(str(raw['retained']))} AS DOUBLE) AS INTEGER)", ())
    elif "cancelled" in raw:
        cancelled = f"CAST({q(str(raw['cancelled']))} AS DOUBLE)"
        out["retained"] = (f"CAST(1 - {cancelled} AS INTEGER)", ())
    if "order_value" in raw:
        if raw["order_value"] is None:
            out["order_value"] = ("CAST(? AS DOUBLE)", (float(column_map.order_value or 0.0),))
        else:
            out["order_value"] = (_number(q(str(raw["order_value"]))), ())
    if "revenue" in raw:
        out["revenue"] = (_number(q(str(raw["revenue"]))), ())
    elif "order_value" in out and "retained" in out:
        value, value_params = out["order_value"]
        retained, _ = out["retained"]
        out["revenue"] = (f"({value}) * ({retained})", value_params)
    return out


def table_from_log(log: ExperimentLog) -> LogTable:
    """The in-memory, validated ``log`` as a table over its frame (DuckDB reads the frame)."""
    frame = log.frame
    kinds: dict[str, Kind] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column.dtype):
            kinds[name] = "bool"
        elif pd.api.types.is_numeric_dtype(column.dtype):
            kinds[name] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(column.dtype):
            kinds[name] = "time"
        else:
            kinds[name] = "text"
    return duckdb_frame_table(
        frame,
        control=log.control,
        arms=log.arms,
        features=log.features,
        kinds=kinds,
        source=log.source,
        propensity_given=log.propensity_given,
        notes=log.notes,
    )
