"""The covariates of regression adjustment, encoded as SQL columns of the log.

Numeric and boolean columns are used as they are; a numeric column with gaps is filled with
its mean beside a 0/1 missing-indicator column (the missing-indicator method: a covariate
measured before assignment, filled and flagged, still adjusts without bias in a randomised
test). Any other column is categorical: one 0/1 indicator per level, the first level (in sorted
order of the levels as text) dropped, missing values a level of their own, ``(missing)``. This
is the encoding ``pandas.get_dummies(drop_first=True)`` gives, written as SQL so that the
engine holding the rows computes it.

Each encoded column is shifted and scaled by a rough mean and spread (numeric columns) before
its cross-products are summed. Lin's estimate and its standard error do not change under such
a change of units, and the sums stay well conditioned: an epoch-seconds covariate would
otherwise square to 10^18 beside indicators of 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from uplift.exceptions import SchemaError
from uplift.experiment.inference import MAX_MAGNITUDE
from uplift.experiment.logtable import LogTable

__all__ = ["MAX_COVARIATE_LEVELS", "Encoded", "encode_covariates"]

#: A categorical covariate with more levels than this is left out of the adjustment.
MAX_COVARIATE_LEVELS = 50
_NOT_COVARIATES = ("arm", "retained", "revenue", "propensity")


@dataclass(frozen=True)
class Encoded:
    """One column of the covariate matrix: its name and SQL (with parameters) over ``log``.

    ``group`` names the 0/1 indicators that share a covariate (the levels of a categorical
    column, a numeric column's missing flag); a row is 1 in at most one of a group's columns.
    Continuous columns have none.
    """

    name: str
    sql: str
    params: tuple[Any, ...]
    group: str | None = None


def encode_covariates(
    table: LogTable, covariates: Sequence[str] | None, notes: list[str]
) -> tuple[list[Encoded], tuple[str, ...]]:
    """The encoded, standardised covariate columns and the covariates used.

    By default, order_value and every feature. A default column with no values, too many
    levels or values too large to sum is left out (and said in ``notes``); an explicitly named
    one is an error.
    """
    explicit = covariates is not None
    default = (["order_value"] if table.has("order_value") else []) + list(table.features)
    names = list(covariates) if covariates is not None else default
    usable = [n for n in names if table.has(n) and n not in _NOT_COVARIATES]
    profile = _profile(table, usable)
    parts: list[Encoded] = []
    used: list[str] = []
    for name in names:
        problem, encoded = (
            _encode(table, name, profile)
            if name in usable
            else ("is not a pre-assignment column of the log", [])
        )
        if problem is None:
            parts += encoded
            used.append(name)
        elif explicit:
            raise SchemaError(f"{table.source}: covariate {name!r} {problem}")
        else:
            notes.append(f"covariate {name} left out of the adjustment: it {problem}")
    if not parts:
        raise SchemaError(
            f"{table.source}: no usable pre-assignment covariates for regression adjustment; "
            "name numeric or categorical columns with --covariate"
        )
    return parts, tuple(used)


def _is_number(table: LogTable, name: str) -> bool:
    return table.kinds.get(name, "numeric") in ("numeric", "bool")


def _value(table: LogTable, name: str) -> str:
    return f"CAST({table.dialect.quote(name)} AS DOUBLE)"


def _missing(table: LogTable, name: str) -> str:
    column = table.dialect.quote(name)
    if table.kinds.get(name, "numeric") == "numeric":
        return f"({column} IS NULL OR isnan({_value(table, name)}))"
    return f"({column} IS NULL)"


def _profile(table: LogTable, names: list[str]) -> pd.Series:
    """One pass: per column, missing count; numbers: mean, spread, how many too large."""
    count = table.dialect.count_if
    sums = ["count(*) AS n"]
    params: list[Any] = []
    for i, name in enumerate(names):
        sums.append(f"{count(_missing(table, name))} AS m{i}")
        if _is_number(table, name):
            present = f"CASE WHEN NOT {_missing(table, name)} THEN {_value(table, name)} END"
            sums += [f"avg({present}) AS a{i}", f"stddev_pop({present}) AS s{i}"]
            # Infinity and NaN count as too large, as in pandas' abs(x) > 2**53 (NaN aside).
            sums.append(f"{count(f'NOT coalesce(abs({present}) <= ?, true)')} AS h{i}")
            params.append(MAX_MAGNITUDE)
    found = table.query(f"SELECT {', '.join(sums)} FROM log", params).iloc[0]
    return found.rename({f"{k}{i}": f"{k}:{n}" for i, n in enumerate(names) for k in "mash"})


def _encode(table: LogTable, name: str, profile: pd.Series) -> tuple[str | None, list[Encoded]]:
    missing = int(profile[f"m:{name}"])
    if missing == int(profile["n"]):
        return "has no values", []
    if _is_number(table, name):
        if int(profile[f"h:{name}"]) > 0:
            value = _value(table, name)
            condition = f"NOT coalesce(abs({value}) <= ? OR isnan({value}), true)"
            where = table.rows_where(condition, [MAX_MAGNITUDE])
            return f"has values beyond ±{MAX_MAGNITUDE:.3g} in {where}", []
        mean, spread = float(profile[f"a:{name}"]), float(profile[f"s:{name}"])
        scale = spread if spread > 0 and np.isfinite(spread) else 1.0
        value = f"(({_value(table, name)} - ?) / ?)"
        if missing == 0:
            return None, [Encoded(name, value, (mean, scale))]
        filled = f"CASE WHEN {_missing(table, name)} THEN 0.0 ELSE {value} END"
        flag = f"CASE WHEN {_missing(table, name)} THEN 1.0 ELSE 0.0 END"
        # The mean fills the gap: (mean - mean) / scale is 0 on the standardised scale.
        return None, [
            Encoded(name, filled, (mean, scale)),
            Encoded(f"{name}_missing", flag, (), group=name),
        ]
    return _indicators(table, name)


def _indicators(table: LogTable, name: str) -> tuple[str | None, list[Encoded]]:
    """0/1 columns of every level but the first, as get_dummies(drop_first=True) makes them."""
    column = table.dialect.quote(name)
    # One more than allowed (and one for missing) tells that there are too many.
    limit = MAX_COVARIATE_LEVELS + 2
    found = table.query(f"SELECT DISTINCT {column} AS v FROM log LIMIT {limit}")["v"]
    if found.notna().sum() > MAX_COVARIATE_LEVELS:
        return f"has more than {MAX_COVARIATE_LEVELS} levels", []
    # The levels are the values as pandas writes them as text (how a time or a number reads).
    text = found.astype(str).where(found.notna(), "(missing)")
    raw_by_level: dict[str, list[Any]] = {}
    for raw, level in zip(found.tolist(), text.tolist(), strict=True):
        raw_by_level.setdefault(level, []).append(None if pd.isna(raw) else _plain(raw))
    out = []
    for level in sorted(raw_by_level)[1:]:
        values = [v for v in raw_by_level[level] if v is not None]
        tests = [f"{column} IN ({', '.join('?' for _ in values)})"] if values else []
        if len(values) < len(raw_by_level[level]):
            tests.append(f"{column} IS NULL")
        condition = " OR ".join(tests)
        sql = f"CASE WHEN {condition} THEN 1.0 ELSE 0.0 END"
        out.append(Encoded(f"{name}_{level}", sql, tuple(values), group=name))
    return None, out


def _plain(value: Any) -> Any:
    """A value as the engines bind it: Python scalars, times as datetime."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value
