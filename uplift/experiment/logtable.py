"""The canonical log as SQL: where a readout's rows live when it only needs their sums.

A :class:`LogTable` names a raw table (a Parquet or CSV file read by DuckDB, a registered
frame, or a Spark DataFrame's view) and an SQL expression for each canonical column over it,
with what checking the log found out (its arms, features, notes). Every aggregate the readout
needs is one query ``WITH log AS (SELECT <canonical columns> FROM <raw>) SELECT ... FROM log``,
run by the engine that holds the rows; only the sums come back. Names from a user's file enter
SQL only through :meth:`Dialect.quote`, values only as bound ``?`` parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from uplift.data.sql import quote_identifier
from uplift.exceptions import describe_rows

__all__ = ["DUCKDB", "SPARK", "Dialect", "Kind", "LogTable", "Runner", "duckdb_frame_table"]

#: Runs one query with its positional parameters and returns the result as a frame.
Runner = Callable[[str, Sequence[Any]], pd.DataFrame]
#: How a column's values are read: ``numeric`` (numbers), ``bool``, ``text``, ``time``.
Kind = str


def _backtick(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL: identifier quotes, the sum, a regex match.

    ``total`` is DuckDB's compensated ``fsum`` (its result does not depend on how the work is
    split between threads); Spark's ``sum`` is a plain one, which moves sums of 10^7 terms by
    about 1e-13 relative, far inside the readout's 1e-9.
    """

    name: str
    total: str
    quote: Callable[[str], str]
    #: Format string: whether {value} matches the regular expression bound to ``?``.
    matches: str
    #: The rows' numbers in the table's order (Spark numbers rows only in an order).
    row_number: str = "row_number() OVER ()"

    def sum(self, expression: str) -> str:
        """The engine's sum of ``expression``."""
        return f"{self.total}({expression})"

    def count_if(self, condition: str) -> str:
        """How many rows satisfy ``condition`` (NULL counts as false)."""
        return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"


DUCKDB = Dialect("duckdb", "fsum", quote_identifier, "regexp_matches({value}, ?)")
SPARK = Dialect(
    "spark",
    "sum",
    _backtick,
    "({value} RLIKE ?)",
    # The order of the files' rows as Spark reads them (one file: the file's order).
    "row_number() OVER (ORDER BY monotonically_increasing_id())",
)


@dataclass(frozen=True)
class LogTable:
    """A validated experiment log held by an SQL engine, in canonical columns.

    ``columns`` maps each canonical column (and each feature) to its SQL expression over the
    raw table ``relation`` and that expression's parameters. ``kinds`` says how each feature
    (and ``order_value``, ``delivered``) is read. ``rows`` is the log's length; ``arms`` lists
    the control arm first, then the treatment arms sorted, as :class:`ExperimentLog` does.
    """

    run: Runner
    dialect: Dialect
    relation: str
    columns: Mapping[str, tuple[str, tuple[Any, ...]]]
    kinds: Mapping[str, Kind]
    control: str
    arms: tuple[str, ...]
    features: tuple[str, ...]
    source: str
    propensity_given: bool
    rows: int
    notes: tuple[str, ...] = field(default=())

    @property
    def treatment_arms(self) -> tuple[str, ...]:
        """The arms other than control, sorted."""
        return self.arms[1:]

    def has(self, column: str) -> bool:
        """Whether the log holds ``column`` (canonical or feature)."""
        return column in self.columns

    def query(self, body: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run ``body`` (a SELECT over ``log``) with the canonical projection before it."""
        q = self.dialect.quote
        select = ", ".join(f"{sql} AS {q(name)}" for name, (sql, _) in self.columns.items())
        bound = [value for _, values in self.columns.values() for value in values]
        text = f"WITH log AS (SELECT {select} FROM {self.relation}) {body}"
        return self.run(text, [*bound, *params])

    def rows_where(self, condition: str, params: Sequence[Any] = ()) -> str:
        """The rows (1-based, in the log's order) where ``condition`` holds, described."""
        flag = f"CASE WHEN {condition} THEN 1 ELSE 0 END"
        numbered = f"SELECT {self.dialect.row_number} AS r, {flag} AS b"
        body = (
            f"SELECT r, count(*) OVER () AS n FROM ({numbered} FROM log) AS t "
            "WHERE b = 1 ORDER BY r LIMIT 5"
        )
        found = self.query(body, params)
        if found.empty:
            return describe_rows([])
        shown = [int(r) for r in found["r"]]
        # describe_rows names the first five and counts the rest: pad to the full count.
        return describe_rows([*shown, *([0] * (int(found["n"].iloc[0]) - len(shown)))])


def duckdb_frame_table(
    frame: pd.DataFrame,
    *,
    control: str,
    arms: tuple[str, ...],
    features: tuple[str, ...],
    kinds: Mapping[str, Kind],
    source: str,
    propensity_given: bool,
    notes: tuple[str, ...],
) -> LogTable:
    """A table over an in-memory frame already in canonical columns (a validated log)."""
    import duckdb  # noqa: PLC0415 - DuckDB is imported by the readout only when it runs

    con = duckdb.connect()
    con.register("src", frame)

    def run(sql: str, params: Sequence[Any]) -> pd.DataFrame:
        return con.execute(sql, list(params)).df()

    columns = {name: (quote_identifier(name), ()) for name in map(str, frame.columns)}
    return LogTable(
        run, DUCKDB, "src", columns, kinds, control, arms, features, source,
        propensity_given, len(frame), notes,
    )  # fmt: skip
