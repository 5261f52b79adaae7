"""The one way a name from a user's file enters SQL: quoted as an identifier.

Values never enter SQL text at all: they are bound as parameters.
"""

from __future__ import annotations

from uplift.exceptions import SchemaError

__all__ = ["quote_identifier"]


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier: in double quotes, each inner double quote doubled.

    A NUL character cannot be quoted, so a name holding one is refused.
    """
    if "\x00" in name:
        raise SchemaError(f"column name {name!r} holds a NUL character; rename it")
    return '"' + name.replace('"', '""') + '"'
