"""The canonical experiment log: read, map columns, validate.

Every stage of the package receives experiment data as an :class:`ExperimentLog`, built once
here and validated on construction. One row is one order that was eligible for an action.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data import normalize
from uplift.data.sql import quote_identifier
from uplift.exceptions import ConfigError, DataWarning, SchemaError

__all__ = [
    "CANONICAL",
    "CONTROL",
    "DEFAULT_TABLE",
    "MIN_ARM_ROWS",
    "ColumnMap",
    "ExperimentLog",
    "iso_week",
    "prepare_reading",
    "read_frame",
    "read_log",
]

CONTROL = "control"
CANONICAL = (
    "order_id",
    "arm",
    "cancelled",
    "retained",
    "order_value",
    "revenue",
    "propensity",
    "delivered",
    "assigned_at",
)
# Fewer rows than this in an arm makes its effect estimate too noisy to act on.
MIN_ARM_ROWS = 50
DEFAULT_TABLE = "experiment_log"


@dataclass(frozen=True)
class ColumnMap:
    """How a user's column names map to canonical ones, and which columns to leave out.

    ``mapping`` is ``{canonical: source}``; ``ignore`` names source columns that are neither
    canonical nor features (other outcomes, for example); ``order_value`` is the value of
    every order when the file has no column for it.
    """

    mapping: dict[str, str] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    order_value: float | None = None

    def __post_init__(self) -> None:
        value = self.order_value
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--order-value must be a positive number; got {value!r}")
        unknown = sorted(set(self.mapping) - set(CANONICAL))
        if unknown:
            raise ConfigError(
                f"--map names unknown canonical column(s) {', '.join(unknown)}; "
                f"canonical columns are {', '.join(CANONICAL)}"
            )

    @classmethod
    def parse(
        cls,
        pairs: Iterable[str] = (),
        ignore: Iterable[str] = (),
        *,
        configured: Mapping[str, str] | None = None,
        order_value: float | None = None,
    ) -> ColumnMap:
        """Build from ``["canonical=source", ...]`` as given on the command line, over the
        ``configured`` map of a project file (a flag wins for its canonical name)."""
        mapping: dict[str, str] = dict(configured or {})
        for pair in pairs:
            canonical, sep, source = pair.partition("=")
            if not sep or not canonical.strip() or not source.strip():
                raise ConfigError(f"--map expects canonical=source; got {pair!r}")
            mapping[canonical.strip()] = source.strip()
        if order_value is not None and "order_value" in mapping:
            raise ConfigError(
                f"the order value is given twice: as the column {mapping['order_value']!r} "
                f"(--map order_value=...) and as the constant {order_value:g} (--order-value)"
            )
        return cls(mapping, tuple(dict.fromkeys(ignore)), order_value)

    def to_orders(self, frame: pd.DataFrame) -> ColumnMap:
        """The part of the map that applies to a file of orders awaiting a decision: orders
        have no arm or outcome yet, so mapped or ignored columns they lack are passed over."""
        present = set(map(str, frame.columns))
        return ColumnMap(
            {c: s for c, s in self.mapping.items() if s in present},
            tuple(c for c in self.ignore if c in present),
            self.order_value,
        )

    def apply(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        """Rename mapped columns to canonical names and drop ignored ones."""
        wanted = list(self.mapping.values()) + list(self.ignore)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"{source}: --map/--ignore names column(s) {', '.join(missing)} that the file "
                f"does not have; columns present: {', '.join(map(str, frame.columns))}"
            )
        clashes = [c for c, s in self.mapping.items() if c in frame.columns and c != s]
        if clashes:
            raise SchemaError(
                f"{source}: column(s) {', '.join(clashes)} exist already and are also mapped "
                "from another column; drop the mapping or the column"
            )
        renamed = frame.drop(columns=list(self.ignore))
        renamed = renamed.rename(columns={s: c for c, s in self.mapping.items()})
        if self.order_value is None:
            return renamed
        if "order_value" in renamed.columns:
            raise SchemaError(
                f"{source}: has an order_value column and --order-value "
                f"{self.order_value:g} was given too; drop one of them"
            )
        return renamed.assign(order_value=float(self.order_value))


@dataclass(frozen=True)
class ExperimentLog:
    """A validated experiment log in canonical columns.

    Build it with :func:`read_log` or :meth:`from_frame`; the constructor trusts its input.
    """

    frame: pd.DataFrame
    control: str
    features: tuple[str, ...]
    source: str
    propensity_given: bool
    notes: tuple[str, ...] = ()

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        control: str = CONTROL,
        column_map: ColumnMap | None = None,
        features: Sequence[str] | None = None,
        source: str = "<frame>",
    ) -> ExperimentLog:
        """Validate ``frame`` and return it as a log; the input frame is not modified."""
        mapped = (column_map or ColumnMap()).apply(frame, source)
        return _validate(mapped, control=control, features=features, source=source)

    @property
    def arms(self) -> tuple[str, ...]:
        """All arms, the control arm first, then the treatment arms in sorted order."""
        return (self.control, *self.treatment_arms)

    @functools.cached_property
    def treatment_arms(self) -> tuple[str, ...]:
        """The arms other than control, sorted (found once: a log's frame is not changed)."""
        return tuple(sorted(a for a in self.frame["arm"].unique() if a != self.control))

    @property
    def X(self) -> pd.DataFrame:
        """The feature columns."""
        return self.frame[list(self.features)]

    @property
    def has_retained(self) -> bool:
        """Whether the log carries the binary outcome."""
        return "retained" in self.frame.columns

    @property
    def has_order_value(self) -> bool:
        """Whether the revenue at risk is known per order."""
        return "order_value" in self.frame.columns

    @property
    def has_revenue(self) -> bool:
        """Whether a revenue outcome is known (given, or order_value x retained)."""
        return "revenue" in self.frame.columns

    @property
    def has_assigned_at(self) -> bool:
        """Whether decision timestamps are known (time-based splits need them)."""
        return "assigned_at" in self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)

    def weeks(self) -> pd.Series:
        """ISO week label (``YYYY-Www``) of every row's decision."""
        if not self.has_assigned_at:
            raise SchemaError(f"{self.source}: the log has no assigned_at column, so no weeks")
        return iso_week(self.frame["assigned_at"])

    def subset(self, mask: pd.Series | np.ndarray) -> ExperimentLog:
        """The rows where ``mask`` holds, as a log with the same control and features."""
        rows = self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return ExperimentLog(
            rows, self.control, self.features, self.source, self.propensity_given, self.notes
        )

    def summary(self) -> pd.DataFrame:
        """Per arm: orders, share, and the mean of each outcome present (raw numbers)."""
        outcomes = [c for c in ("retained", "revenue", "order_value") if c in self.frame]
        grouped = self.frame.groupby("arm", sort=False)
        table = grouped[outcomes].mean().add_prefix("mean_")
        table.insert(0, "orders", grouped.size())
        table.insert(1, "share", table["orders"] / len(self.frame))
        return table.reindex(list(self.arms)).rename_axis("arm").reset_index()


def iso_week(timestamps: pd.Series) -> pd.Series:
    """Label timestamps with their ISO week, ``YYYY-Www``."""
    iso = timestamps.dt.isocalendar()
    return iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)


def read_log(
    path: str | Path,
    *,
    column_map: ColumnMap | None = None,
    control: str = CONTROL,
    features: Sequence[str] | None = None,
    table: str = DEFAULT_TABLE,
) -> ExperimentLog:
    """Read a CSV, Parquet or DuckDB experiment log and validate it.

    For a ``.duckdb`` file, ``table`` names the table to read.
    """
    source = str(path)
    id_column = (column_map or ColumnMap()).mapping.get("order_id", "order_id")
    frame = read_frame(path, table=table, id_column=id_column)
    return ExperimentLog.from_frame(
        frame, control=control, column_map=column_map, features=features, source=source
    )


def prepare_reading() -> None:
    """Import what :func:`read_frame` imports on its first Parquet file: a command that reads
    in one thread while another imports then has no import running in two threads at once."""
    import pandas.io.parquet  # noqa: F401, PLC0415 - imported ahead, see above
    import pyarrow.parquet  # noqa: F401, PLC0415 - as above


def read_frame(
    path: str | Path, *, table: str = DEFAULT_TABLE, id_column: str = "order_id"
) -> pd.DataFrame:
    """Read a table file as it is, with clear errors for missing, empty or unreadable files.

    ``id_column`` is read as text from a CSV file (so that "0017" keeps its zeros) and then
    normalised like every order id (:func:`uplift.data.normalize.order_ids`).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "file not found"
        raise SchemaError(f"{path}: {what}")
    if path.stat().st_size == 0:
        raise SchemaError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".duckdb"):
        raise SchemaError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .parquet or .duckdb"
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype={id_column: "string"})
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_duckdb(path, table)
    except SchemaError:
        raise
    except Exception as error:  # any failure of a reader means the file cannot be read as such
        how = "parse as CSV" if suffix == ".csv" else f"read as {suffix[1:]}"
        raise SchemaError(f"{path}: cannot {how}: {_first_line(error)}") from None
    if frame.empty:
        raise SchemaError(f"{path}: file has a header but no rows")
    if id_column in frame.columns:
        frame[id_column] = normalize.order_ids(frame[id_column], str(path))
    return frame


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _read_duckdb(path: Path, table: str) -> pd.DataFrame:
    import duckdb  # noqa: PLC0415 - on `uplift --help`'s start-up path; only .duckdb input needs it

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            tables = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
            if table not in tables:
                raise SchemaError(
                    f"{path}: no table {table!r}; tables present: {', '.join(tables) or 'none'}"
                )
            query = f"SELECT * FROM {quote_identifier(table)}"
            return con.execute(query).df()
    except duckdb.Error as error:
        raise SchemaError(f"{path}: cannot read as DuckDB: {_first_line(error)}") from None


_rows = normalize.rows


def _validate(
    frame: pd.DataFrame, *, control: str, features: Sequence[str] | None, source: str
) -> ExperimentLog:
    frame = frame.reset_index(drop=True)
    frame.columns = pd.Index(normalize.column_names(frame.columns, source), dtype=object)
    for column in set(CANONICAL) & set(frame.columns):
        normalize.refuse_nested(frame[column], column, source)
    notes: list[str] = []
    if "arm" not in frame.columns:
        raise SchemaError(
            f"{source}: missing required column 'arm'; columns present: "
            f"{', '.join(map(str, frame.columns))} (map yours with --map arm=COLUMN)"
        )
    out = pd.DataFrame({"order_id": _order_ids(frame, source, notes)})
    out["arm"] = _arms(frame["arm"], control, source)
    _outcomes(frame, out, source)
    for column in ("order_value", "revenue"):
        if column in frame.columns:
            out[column] = _non_negative(frame[column], column, source)
    if "revenue" not in out and "order_value" in out and "retained" in out:
        out["revenue"] = out["order_value"] * out["retained"]
    propensity_given = "propensity" in frame.columns
    if propensity_given:
        out["propensity"] = normalize.propensities(frame["propensity"], source)
    else:
        share = out["arm"].map(out["arm"].value_counts(normalize=True)).astype(float)
        out["propensity"] = share
        notes.append(
            "no propensity column: uniform randomisation assumed, each order's propensity is "
            "its arm's share of the log"
        )
    if "delivered" in frame.columns:
        out["delivered"] = _delivered(frame["delivered"], source)
    if "assigned_at" in frame.columns:
        out["assigned_at"] = normalize.timestamps(frame["assigned_at"], source, notes)
    chosen = _features(frame, features, source)
    out = pd.concat([out, pd.DataFrame(chosen, index=out.index)], axis=1)
    _warn_small_arms(out["arm"], source)
    return ExperimentLog(out, control, tuple(chosen), source, propensity_given, tuple(notes))


def _order_ids(frame: pd.DataFrame, source: str, notes: list[str]) -> pd.Series:
    if "order_id" not in frame.columns:
        message = f"{source}: no order_id column; row numbers are used as order ids"
        warnings.warn(message, DataWarning, stacklevel=4)
        notes.append(message)
        return pd.Series(np.arange(1, len(frame) + 1), name="order_id")
    ids = normalize.order_ids(frame["order_id"], source)
    if _strictly_increasing(ids):
        return ids  # the common case of sequential ids, checked in linear time
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        examples = ", ".join(map(str, ids[duplicated].drop_duplicates().head(5)))
        raise SchemaError(
            f"{source}: column order_id has {int(ids.duplicated().sum())} duplicate id(s) "
            f"(e.g. {examples}) in {_rows(duplicated)}"
        )
    return ids


def _strictly_increasing(ids: pd.Series) -> bool:
    values = ids.to_numpy()
    return values.dtype.kind in "iu" and bool(np.all(values[1:] > values[:-1]))


def _arms(arms: pd.Series, control: str, source: str) -> pd.Series:
    labels = normalize.arm_labels(arms, source)
    present = sorted(labels.unique())
    if control not in present:
        raise SchemaError(
            f"{source}: control arm {control!r} not found in column arm; arms present: "
            f"{', '.join(present)} (name the control arm with --control)"
        )
    if len(present) < 2:
        raise SchemaError(f"{source}: column arm holds only the control arm {control!r}")
    return labels


def _binary(values: pd.Series, column: str, source: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin([0, 1])
    if bad.any():
        found = values[bad].drop_duplicates().head(3)
        examples = ", ".join("missing" if pd.isna(v) else repr(v) for v in found.tolist())
        raise SchemaError(
            f"{source}: column {column} must be 0 or 1; found {examples} in {_rows(bad)}"
        )
    return numeric.astype("int8")


def _delivered(values: pd.Series, source: str) -> pd.Series:
    """Whether the action reached the customer: 0 or 1, missing where none was taken."""
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & ~numeric.isin([0, 1])
    if bad.any():
        found = ", ".join(repr(v) for v in values[bad].drop_duplicates().head(3).tolist())
        raise SchemaError(
            f"{source}: column delivered must be 0, 1 or missing; found {found} in {_rows(bad)}"
        )
    return numeric.astype("Int8")


def _outcomes(frame: pd.DataFrame, out: pd.DataFrame, source: str) -> None:
    has_cancelled = "cancelled" in frame.columns
    has_retained = "retained" in frame.columns
    if has_cancelled:
        out["retained"] = (1 - _binary(frame["cancelled"], "cancelled", source)).astype("int8")
    if has_retained:
        retained = _binary(frame["retained"], "retained", source)
        if has_cancelled:
            clash = retained != out["retained"]
            if clash.any():
                raise SchemaError(
                    f"{source}: columns cancelled and retained disagree "
                    f"(retained must be 1 - cancelled) in {_rows(clash)}"
                )
        out["retained"] = retained
    if not (has_cancelled or has_retained or "revenue" in frame.columns):
        raise SchemaError(
            f"{source}: no outcome column; give cancelled or retained (0/1), or revenue; "
            f"columns present: {', '.join(map(str, frame.columns))} "
            "(map yours with --map retained=COLUMN)"
        )


def _non_negative(values: pd.Series, column: str, source: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    bad = numeric.isna() | numeric.abs().eq(np.inf)
    if bad.any():
        raise SchemaError(
            f"{source}: column {column} must be a finite number; missing, non-numeric or "
            f"infinite in {_rows(bad)}"
        )
    negative = numeric < 0
    if negative.any():
        raise SchemaError(f"{source}: column {column} must be >= 0; negative in {_rows(negative)}")
    return numeric


def _features(
    frame: pd.DataFrame, features: Sequence[str] | None, source: str
) -> dict[str, pd.Series]:
    """The usable feature columns, normalised; entirely missing or constant ones are dropped."""
    if features is not None:
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise SchemaError(
                f"{source}: feature column(s) {', '.join(missing)} not found; "
                f"columns present: {', '.join(map(str, frame.columns))}"
            )
        chosen = list(features)
    else:
        chosen = [str(c) for c in frame.columns if c not in CANONICAL]
    usable = {}
    for name in chosen:
        column = normalize.feature_values(frame[name], name, source)
        if column.isna().all():
            reason = "entirely missing"
        elif column.notna().all() and column.eq(column.iloc[0]).all():
            reason = f"constant ({column.iloc[0]!r})"
        else:
            usable[name] = column
            continue
        warnings.warn(
            f"{source}: feature column {name} is {reason}; it is left out of the features",
            DataWarning,
            stacklevel=4,
        )
    return usable


def _warn_small_arms(arms: pd.Series, source: str) -> None:
    counts = arms.value_counts()
    small = counts[counts < MIN_ARM_ROWS]
    for arm, n in small.items():
        warnings.warn(
            f"{source}: arm {arm!r} has only {n} rows (fewer than {MIN_ARM_ROWS}); "
            "its estimates will be too noisy to act on",
            DataWarning,
            stacklevel=4,
        )
