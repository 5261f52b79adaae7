"""Hash assignment of orders to the arms of a design.

Assignment is ``md5(salt + ":" + order_id)``, so the same order lands in the same arm on any
machine, in any row order, and in SQL (``md5`` exists in every warehouse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from uplift.exceptions import SchemaError, describe_rows

if TYPE_CHECKING:
    from uplift.experiment.design import Design

__all__ = ["EXPLORE_SALT", "assign_arms", "hash_unit", "rank_salt"]

# 13 hex digits = 52 bits: the fraction int(hex, 16) / 16**13 is exact in a float64.
_HASH_HEX_DIGITS = 13
#: The second draw of an explored order (which arm it gets) is salted with the first draw's
#: salt followed by this, by ``uplift rank`` on either engine and by ``uplift serve``.
EXPLORE_SALT = ":explore"


def rank_salt(seed: int) -> str:
    """The salt of the holdout and exploration draws of a queue ranked with ``seed``."""
    return f"uplift-rank:{seed}"


def hash_unit(order_ids: pd.Series, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per order: the first 52 bits of md5(salt:order_id).

    Equal to ``int(hashlib.md5(f"{salt}:{order_id}".encode()).hexdigest()[:13], 16) / 16**13``
    for every order, computed by DuckDB in one vectorised pass.
    """
    ids = pd.DataFrame({"order_id": order_ids.astype(str).to_numpy(dtype=object)})
    with duckdb.connect() as con:
        con.register("ids", ids)
        digits = con.execute(
            "SELECT ('0x' || substr(md5(? || ':' || order_id), 1, ?))::UBIGINT AS h FROM ids",
            [salt, _HASH_HEX_DIGITS],
        ).fetchnumpy()["h"]
    return np.asarray(digits, dtype=np.float64) / float(16**_HASH_HEX_DIGITS)


def assign_arms(
    orders: pd.DataFrame,
    design: Design,
    *,
    stratify: str | None = None,
    source: str = "<frame>",
) -> pd.DataFrame:
    """Return ``orders`` with ``arm`` and ``propensity`` (the arm's designed share) beside them.

    Without strata, ``hash_unit`` falls into the arms' cumulative shares, so an order's arm
    depends on nothing but the salt and its id. With ``stratify`` (or the design's), orders are
    ranked by ``hash_unit`` within each stratum and cut in the designed shares, so every stratum
    is split exactly (to one order); that arm depends on the batch's other orders of the stratum.
    """
    ids = _order_ids(orders, source)
    if "arm" in orders.columns or "propensity" in orders.columns:
        raise SchemaError(
            f"{source}: orders already have an arm or propensity column; assign reads pending "
            "orders (drop those columns, or use the existing assignment)"
        )
    unit = hash_unit(ids, design.salt)
    column = stratify or design.stratify
    if column is not None:
        unit = _stratified_position(unit, orders, column, source)
    arms = np.array(design.arms, dtype=object)
    shares = np.array([design.allocation[a] for a in design.arms])
    edges = np.cumsum(shares)[:-1]
    index = np.searchsorted(edges, unit, side="right")
    out = orders.copy()
    out["arm"] = arms[index]
    out["propensity"] = shares[index]
    return out


def _order_ids(orders: pd.DataFrame, source: str) -> pd.Series:
    if "order_id" not in orders.columns:
        raise SchemaError(
            f"{source}: no order_id column; assignment hashes the order id. Columns present: "
            f"{', '.join(map(str, orders.columns))}"
        )
    ids = orders["order_id"]
    bad = ids.isna() | ids.duplicated(keep=False)
    if bad.any():
        raise SchemaError(
            f"{source}: column order_id must be present and unique; missing or duplicated in "
            f"{describe_rows(np.flatnonzero(bad.to_numpy()) + 1)}"
        )
    return ids


def _stratified_position(
    unit: np.ndarray, orders: pd.DataFrame, column: str, source: str
) -> np.ndarray:
    if column not in orders.columns:
        raise SchemaError(f"{source}: stratification column {column!r} not found")
    strata = orders[column].astype(str).to_numpy()
    ranks = pd.Series(unit).groupby(strata).rank(method="first").to_numpy()
    sizes = pd.Series(strata).map(pd.Series(strata).value_counts()).to_numpy()
    # Midpoints of equal slices of [0, 1): the designed shares cut each stratum exactly.
    return (ranks - 0.5) / sizes
