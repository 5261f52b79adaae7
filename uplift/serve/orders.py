"""Orders in: a call's orders checked and turned into model inputs, signatures and hash draws.

:func:`prepare` refuses a malformed call with a :class:`SchemaError` naming the order's position
and the field, before anything is decided. The model inputs stay numpy arrays
(:class:`OrderInputs`): a DataFrame is built only for the scoring path that needs one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import SchemaError
from uplift.experiment.assignment import EXPLORE_SALT

__all__ = ["MAX_BATCH", "Batch", "Column", "OrderInputs", "hash_unit", "prepare", "signatures"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
#: One model input over the orders: float64 numbers (NaN: missing), or texts and None.
Column = FloatArray | NDArray[np.object_]

#: Orders per call, all predicted in one vectorised pass.
MAX_BATCH = 10_000
# 13 hex digits = 52 bits, as uplift.experiment.assignment.hash_unit.
_HASH_HEX_DIGITS = 13
_HASH_BYTES = (_HASH_HEX_DIGITS + 1) // 2


@dataclass(frozen=True, eq=False)
class OrderInputs:
    """The model inputs of some orders, by input name, in the model's order of inputs."""

    columns: dict[str, Column]
    rows: int

    def __len__(self) -> int:
        return self.rows

    def take(self, rows: IntArray) -> OrderInputs:
        """The inputs of the orders at positions ``rows``, in that order."""
        return OrderInputs({n: c[rows] for n, c in self.columns.items()}, len(rows))

    def frame(self) -> pd.DataFrame:
        """The inputs as the DataFrame the models' own ``predict`` methods take."""
        return pd.DataFrame(self.columns, index=pd.RangeIndex(self.rows))

    @staticmethod
    def concat(parts: Sequence[OrderInputs]) -> OrderInputs:
        """The orders of ``parts``, one part after another (each part has the same inputs)."""
        if len(parts) == 1:
            return parts[0]
        names = list(parts[0].columns)
        columns = {n: np.concatenate([p.columns[n] for p in parts]) for n in names}
        return OrderInputs(columns, sum(p.rows for p in parts))


@dataclass(frozen=True, eq=False)
class Batch:
    """One call's orders, validated: ids, model inputs, signal signatures and hash draws."""

    ids: list[Any]
    keys: NDArray[np.object_]
    inputs: OrderInputs
    signatures: NDArray[np.object_]
    hold: FloatArray
    pick: FloatArray


def prepare(
    orders: Sequence[Mapping[str, Any]],
    inputs: Sequence[str],
    numeric: frozenset[str] | None,
    salt: str,
) -> Batch:
    """Validate the orders and build their model inputs, signatures and hash draws.

    ``inputs`` are the model's inputs; ``numeric`` those it reads as numbers (None: decide by
    the values, for a model without an encoder).
    """
    if not isinstance(orders, list | tuple):
        raise SchemaError(f"orders must be a list of objects; got {type(orders).__name__}")
    if len(orders) > MAX_BATCH:
        raise SchemaError(f"at most {MAX_BATCH:,} orders per call; got {len(orders):,}")
    not_objects = [k for k, o in enumerate(orders) if not isinstance(o, Mapping)]
    if not_objects:
        raise SchemaError(f"orders[{not_objects[0]}] must be an object of fields")
    required = {"order_id", *inputs}
    for k, order in enumerate(orders):
        missing = required.difference(order.keys())
        if missing:
            raise SchemaError(
                f"orders[{k}] lacks field(s) {', '.join(sorted(missing))}; every order needs "
                f"order_id, {', '.join(inputs)}"
            )
    ids = [order["order_id"] for order in orders]
    bad_ids = [k for k, i in enumerate(ids) if not _valid_id(i)]
    if bad_ids:
        raise SchemaError(
            f"orders[{bad_ids[0]}].order_id must be a non-empty text or an integer; got "
            f"{ids[bad_ids[0]]!r}"
        )
    keys = np.array([str(i) for i in ids], dtype=object)
    if len(set(keys)) < len(keys):
        where = np.flatnonzero(pd.Index(keys).duplicated(keep=False))
        raise SchemaError(
            f"order_id {keys[where[0]]} appears more than once (orders "
            f"{', '.join(map(str, where[:5]))}); send each order once per call"
        )
    columns = {name: _column(name, [o[name] for o in orders], numeric) for name in inputs}
    return Batch(
        ids=list(ids),
        keys=keys,
        inputs=OrderInputs(columns, len(orders)),
        signatures=signatures(columns, len(orders)),
        hold=hash_unit(keys, salt),
        pick=hash_unit(keys, salt + EXPLORE_SALT),
    )


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and bool(value.strip())


def _column(name: str, values: list[Any], numeric: frozenset[str] | None) -> Column:
    """One model input of the orders, checked: numbers (missing: NaN), or texts (or None)."""
    if numeric is None:  # a model without an encoder: numbers are what look like numbers
        is_numeric = pd.api.types.is_numeric_dtype(pd.Series(values))
    else:
        is_numeric = name in numeric
    if name == "order_value" or is_numeric:
        strange = np.zeros(len(values), dtype=bool)
        try:  # numbers, None (NaN), numeric texts and booleans convert in one pass
            numbers = np.asarray(values, dtype=np.float64)
            if numbers.ndim != 1:
                raise ValueError(name)
        except (TypeError, ValueError):  # something else: find it
            converted = [_as_number(v) for v in values]
            strange = np.array([c is _NOT_A_NUMBER for c in converted])
            numbers = np.array([math.nan if c is _NOT_A_NUMBER else c for c in converted])
        bad = strange | np.isinf(numbers)
        if name == "order_value":
            bad |= np.isnan(numbers) | (numbers < 0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            kind = "a finite number >= 0" if name == "order_value" else "a number or null"
            raise SchemaError(f"orders[{first}].{name} must be {kind}; got {values[first]!r}")
        return numbers
    texts = np.fromiter(values, dtype=object, count=len(values))
    # Texts and None pass as they are; anything else is checked and made a text one by one.
    if not all(v is None or type(v) is str for v in values):
        scalar = [v is None or isinstance(v, str | int | float) for v in values]
        if not all(scalar):
            first = scalar.index(False)
            raise SchemaError(
                f"orders[{first}].{name} must be a text or null; got {values[first]!r}"
            )
        texts = np.array([_as_text(v) for v in values], dtype=object)
    return texts


_NOT_A_NUMBER = object()


def _as_number(value: Any) -> Any:
    """A number as is, a numeric text as its number, None as NaN; anything else a marker."""
    if value is None:
        return math.nan
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _NOT_A_NUMBER
    return _NOT_A_NUMBER


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def signatures(columns: Mapping[str, Column], rows: int) -> NDArray[np.object_]:
    """A 64-bit hash per order of its model inputs (by name), as 16 hex digits.

    Numbers count to 9 significant digits, so a value that went through a text format and
    moved in its last digits is the same signal (as the store's ingest compares them).
    """
    ordered = [columns[n] for n in sorted(columns)]
    numbers = [c for c in ordered if c.dtype == np.float64]
    texts = [c for c in ordered if c.dtype != np.float64]
    # One pass over all numbers (rows x inputs): a pass per input cost more than the hashes.
    stacked = np.column_stack(numbers).astype(np.float64) if numbers else np.empty((rows, 0))
    packed = np.ascontiguousarray(_significant(stacked))
    words = [
        "\x1f".join("\x00" if t is None else t for t in row).encode()
        for row in zip(*texts, strict=True)
    ] or [b""] * rows
    return np.array(
        [
            hashlib.blake2b(packed[k].tobytes() + words[k], digest_size=8).hexdigest()
            for k in range(rows)
        ],
        dtype=object,
    )


def _significant(values: FloatArray, digits: int = 9) -> FloatArray:
    nonzero = np.isfinite(values) & (values != 0)
    exponent = np.floor(np.log10(np.abs(np.where(nonzero, values, 1.0))))
    scale = 10.0 ** (digits - 1 - exponent)
    rounded = np.where(nonzero, np.round(values * scale) / scale, values)
    return np.where(np.isnan(rounded), np.nan, rounded) + 0.0  # one NaN, and -0.0 as 0.0


def hash_unit(keys: NDArray[np.object_], salt: str) -> FloatArray:
    """``hash_unit(order_ids, salt)`` of :mod:`uplift.experiment.assignment`, bit for bit.

    In Python rather than DuckDB: opening DuckDB costs about 17 ms a call, more than the md5
    of 10,000 ids here (tests check the two agree).
    """
    prefix = salt + ":"
    # The first 13 hex digits of the md5: the first 7 bytes less their last 4 bits.
    shift = 4 * (2 * _HASH_BYTES - _HASH_HEX_DIGITS)
    digits = [
        int.from_bytes(hashlib.md5((prefix + key).encode()).digest()[:_HASH_BYTES]) >> shift
        for key in keys
    ]
    return np.asarray(digits, dtype=np.float64) / float(16**_HASH_HEX_DIGITS)
