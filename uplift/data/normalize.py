"""Raw column values read as the user meant them: order ids, time stamps, arm labels, features.

Each function takes one column of a user's file and returns it in the one form the rest of the
package relies on, or raises :class:`SchemaError` naming the column and the rows at fault. None
of them guesses silently: where a reading is a choice (epoch units, time zones), the choice is
returned as a note for the log's summary.
"""

from __future__ import annotations

import re
import warnings
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from uplift.exceptions import ConfigError, SchemaError, describe_rows

__all__ = [
    "MIN_PROPENSITY",
    "arm_labels",
    "check_week",
    "column_names",
    "feature_values",
    "order_id_kind",
    "order_ids",
    "propensities",
    "refuse_nested",
    "rows",
    "timestamps",
]

#: The two kinds of order id a log (and a store) can hold; 1 and 1.0 are one integer id,
#: "0001" is a text id.
ID_KINDS = ("integer", "text")
# Integers exactly representable as float64: larger float ids have lost digits already.
_MAX_FLOAT_ID = 2**53
# At most 18 digits, so that every such id fits an int64.
_INTEGER_TEXT = re.compile(r"[+-]?(0|[1-9][0-9]{0,17})(\.0+)?")
#: Epoch numbers are read in the unit that puts them between these dates; others are refused.
EPOCH_RANGE = (pd.Timestamp("1980-01-01"), pd.Timestamp("2100-01-01"))
_EPOCH_UNITS = ("s", "ms", "us", "ns")
#: A logged propensity below this would give one order a weight above 10,000.
MIN_PROPENSITY = 1e-4
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_NESTED = (list, tuple, dict, set, np.ndarray, bytes, bytearray)


def rows(mask: pd.Series | np.ndarray) -> str:
    """Describe offending rows by 1-based data row number (header excluded)."""
    return describe_rows(np.flatnonzero(np.asarray(mask)) + 1)


def order_id_kind(ids: pd.Series) -> str:
    """``integer`` or ``text``: the kind of a column returned by :func:`order_ids`."""
    return "integer" if pd.api.types.is_integer_dtype(ids) else "text"


def order_ids(ids: pd.Series, source: str) -> pd.Series:
    """Order ids as int64 (every id an integer, written 1 or 1.0) or as stripped text.

    Text that spells integers in their plain form ("17", "17.0") becomes integers, so a CSV
    and a Parquet file of the same orders agree; text with leading zeros ("0017") stays text,
    because "0017" and "17" may be different orders.
    """
    if ids.isna().any():
        raise SchemaError(f"{source}: column order_id is empty in {rows(ids.isna())}")
    if pd.api.types.is_bool_dtype(ids):
        raise SchemaError(f"{source}: column order_id holds true/false values, not ids")
    if pd.api.types.is_integer_dtype(ids):
        return _integer_ids(ids, source)
    if pd.api.types.is_float_dtype(ids):
        values = ids.to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > _MAX_FLOAT_ID)
        if bad.any():
            raise SchemaError(
                f"{source}: column order_id holds numbers that are not whole ids "
                f"(e.g. {ids[bad].iloc[0]!r}) in {rows(bad)}"
            )
        return pd.Series(values.astype(np.int64), index=ids.index, name="order_id")
    refuse_nested(ids, "order_id", source)
    text = ids.astype(str).str.strip()
    empty = text.eq("")
    if empty.any():
        raise SchemaError(f"{source}: column order_id is empty in {rows(empty)}")
    if text.str.fullmatch(_INTEGER_TEXT.pattern).all():
        numbers = text.str.replace(r"\.0+$", "", regex=True)
        return _integer_ids(pd.to_numeric(numbers), source).set_axis(ids.index)
    return text.astype(object).rename("order_id")


def _integer_ids(ids: pd.Series, source: str) -> pd.Series:
    if ids.dtype == np.uint64 or ids.dtype == object:
        too_big = pd.to_numeric(ids).abs() >= 2**63
        if too_big.any():
            raise SchemaError(f"{source}: column order_id has ids beyond 2^63 in {rows(too_big)}")
    return ids.astype(np.int64).rename("order_id")


def arm_labels(arms: pd.Series, source: str) -> pd.Series:
    """Arm labels as stripped text; labels that differ only in case or spaces are refused."""
    if arms.isna().any():
        raise SchemaError(f"{source}: column arm is empty in {rows(arms.isna())}")
    refuse_nested(arms, "arm", source)
    labels = arms.astype(str).str.strip()
    empty = labels.eq("")
    if empty.any():
        raise SchemaError(f"{source}: column arm is empty in {rows(empty)}")
    raw = pd.Series(arms.astype(str).unique())
    folded = raw.str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()
    clashes = raw[folded.duplicated(keep=False)]
    if len(clashes):
        names = ", ".join(repr(a) for a in sorted(clashes))
        raise SchemaError(
            f"{source}: column arm has labels that differ only in case or spaces ({names}); "
            "write each arm one way"
        )
    return labels.astype(object).rename("arm")


def propensities(values: pd.Series, source: str) -> pd.Series:
    """Logged propensities in [MIN_PROPENSITY, 1]; anything else is refused, naming rows."""
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    bad = ~((numeric > 0) & (numeric <= 1))
    if bad.any():
        raise SchemaError(
            f"{source}: column propensity must lie in (0, 1]; found values outside it or "
            f"missing in {rows(bad)}"
        )
    tiny = numeric < MIN_PROPENSITY
    if tiny.any():
        raise SchemaError(
            f"{source}: column propensity is below {MIN_PROPENSITY:g} in {rows(tiny)}; such an "
            "order would weigh more than 10,000 others (a percentage or a log-probability?)"
        )
    return numeric


def timestamps(values: pd.Series, source: str, notes: list[str]) -> pd.Series:
    """Decision times as naive UTC timestamps; epoch numbers are read by their magnitude.

    Time stamps with a zone or offset are converted to UTC (weeks are then UTC weeks) and a
    note says so; naive ones are taken to be UTC already.
    """
    if pd.api.types.is_bool_dtype(values):
        raise SchemaError(f"{source}: column assigned_at holds true/false values, not times")
    if pd.api.types.is_numeric_dtype(values):
        return _epochs(values, source, notes)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        notes.append(f"assigned_at: time stamps in {values.dtype.tz} converted to UTC")
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ns]")
    refuse_nested(values, "assigned_at", source)
    text = values.astype(str).str.strip()
    zoned = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z|UTC)$", regex=True) & values.notna()
    with warnings.catch_warnings():
        # Mixed formats make pandas warn that it parses element by element: fine here.
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna()
    if bad.any():
        examples = ", ".join(map(repr, values[bad].drop_duplicates().head(3).tolist()))
        raise SchemaError(
            f"{source}: column assigned_at has unparseable or missing timestamps "
            f"({examples}) in {rows(bad)}"
        )
    if zoned.any():
        mixed = " (the others, without a zone, are taken as UTC)" if not zoned.all() else ""
        notes.append(
            f"assigned_at: {int(zoned.sum()):,} time stamps with a zone or offset converted to "
            f"UTC{mixed}; weeks are UTC weeks"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _epochs(values: pd.Series, source: str, notes: list[str]) -> pd.Series:
    numeric = values.astype(float)
    bad = ~np.isfinite(numeric.to_numpy())
    if bad.any():
        raise SchemaError(f"{source}: column assigned_at is missing or infinite in {rows(bad)}")
    lowest, highest = (t.value for t in EPOCH_RANGE)  # nanoseconds
    magnitude = float(np.median(np.abs(numeric)))
    for unit, per in zip(_EPOCH_UNITS, (1e9, 1e6, 1e3, 1.0), strict=True):
        if lowest <= magnitude * per < highest:
            nanos = numeric * per
            outside = (nanos < lowest) | (nanos >= highest)
            if outside.any():
                raise SchemaError(
                    f"{source}: column assigned_at reads as epoch {unit} but some values fall "
                    f"outside {EPOCH_RANGE[0]:%Y}-{EPOCH_RANGE[1]:%Y} in {rows(outside)}"
                )
            notes.append(f"assigned_at: numbers read as Unix epoch {unit} (UTC)")
            exact = nanos.round().astype(np.int64).astype("datetime64[ns]")
            return pd.Series(exact.to_numpy(), index=values.index, name=values.name)
    raise SchemaError(
        f"{source}: column assigned_at holds numbers ({values.iloc[0]!r}, ...) that are no epoch "
        f"time between {EPOCH_RANGE[0]:%Y} and {EPOCH_RANGE[1]:%Y} in seconds, milliseconds, "
        "microseconds or nanoseconds; write ISO time stamps instead"
    )


def feature_values(column: pd.Series, name: str, source: str) -> pd.Series:
    """A feature column in a type every stage can use: numbers, booleans, text or times.

    Object columns that mix numbers and text become text; nested values (lists, structs,
    dictionaries, bytes) are refused, naming the column.
    """
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_timedelta64_dtype(column):
        return column.dt.total_seconds()
    if isinstance(column.dtype, pd.ArrowDtype):
        kind = column.dtype.pyarrow_dtype
        if pa.types.is_nested(kind) or pa.types.is_binary(kind):
            raise SchemaError(_nested_message(name, source))
        return column
    if column.dtype != object:
        return column
    refuse_nested(column, name, source)
    inferred = pd.api.types.infer_dtype(column, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return pd.to_numeric(column).astype(float)
    if inferred == "boolean" and column.notna().all():
        return column.astype(bool)
    if inferred in ("string", "empty"):
        return column
    return column.map(_text, na_action="ignore").astype(object)


def _text(value: Any) -> str:
    return str(value)


def refuse_nested(column: pd.Series, name: str, source: str) -> None:
    """Raise when an object column holds lists, structs, dictionaries or bytes."""
    if column.dtype != object:
        return
    if pd.api.types.infer_dtype(column, skipna=True) not in ("mixed", "bytes", "unknown-array"):
        return
    nested = column.map(lambda v: isinstance(v, _NESTED))
    if nested.any():
        raise SchemaError(f"{_nested_message(name, source)} ({rows(nested)})")


def _nested_message(name: str, source: str) -> str:
    return (
        f"{source}: column {name} holds lists, structs or bytes, which cannot be used as a "
        f"value; flatten it or leave it out with --ignore {name}"
    )


def column_names(columns: pd.Index, source: str) -> list[str]:
    """Column names as text; control characters and names equal but for case are refused."""
    names = [str(c) for c in columns]
    control = [n for n in names if any(ord(ch) < 32 or ord(ch) == 127 for ch in n)]
    if control:
        raise SchemaError(
            f"{source}: column name(s) {', '.join(map(repr, control))} hold control "
            "characters; rename them"
        )
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other is not name:
            how = "appears twice" if other == name else f"and {other!r} differ only in case"
            raise SchemaError(
                f"{source}: column {name!r} {how}; the store cannot keep both, so rename one"
            )
    return names


def check_week(label: str, option: str = "--week") -> str:
    """An ISO week label ``YYYY-Www`` that exists in the calendar; anything else is refused.

    Week labels become folder and file names, so nothing else may pass.
    """
    match = _WEEK.fullmatch(label) if isinstance(label, str) else None
    if match is not None:
        try:
            date.fromisocalendar(int(match[1]), int(match[2]), 1)
            return label
        except ValueError:
            pass
    raise ConfigError(f"{option} must be an ISO week like 2026-W07; got {label!r}")
