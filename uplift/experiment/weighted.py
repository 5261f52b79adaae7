"""Weighted (Hajek) means and ratio estimators with sandwich variances, from sufficient sums.

Per group, with weights ``w`` (1 / propensity), an outcome ``y`` and a scale ``s`` (1 for a
plain mean), the estimate is the ratio ``r = sum(w y) / sum(w s)`` and the variance of ``r`` is
the linearised (sandwich) one, scaled by n / (n - 1) so that equal weights and s = 1 give
exactly Welch's ``s^2 / n``::

    var(r) = sum(w^2 (y - r s)^2) / sum(w s)^2 * n / (n - 1)

The residual sum is expanded,
``sum(w^2 (y - r s)^2) = sum(w^2 y^2) - 2 r sum(w^2 y s) + r^2 sum(w^2 s^2)``, so every figure
comes from sums taken in one pass before ``r`` is known. The sums are columns of one frame
(names fixed by the mean case, s = 1, which is how the readout has always named them):

==============  ===================  ===============
column          sum over the group   when s = 1
==============  ===================  ===============
``n``           1 (the row count)
``sw``          w s                  sum of w
``sw2``         w^2 s^2              sum of w^2
``sw_<y>``      w y
``sw2_<y>``     w^2 y s              sum of w^2 y
``sw2y2_<y>``   w^2 y^2
==============  ===================  ===============
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from uplift.data.sql import quote_identifier

__all__ = ["estimates", "ratio_estimate", "sufficient_statistics", "sums_query"]

FloatArray = NDArray[np.float64]


def sufficient_statistics(
    frame: pd.DataFrame,
    by: Sequence[str],
    outcomes: Mapping[str, str],
    *,
    weight: str = "1.0 / propensity",
    scale: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per group of ``by`` (sorted by it): the sums of the module table, for every outcome.

    ``outcomes`` maps each outcome's name to a SQL expression over ``frame``'s columns;
    ``weight`` and ``scale`` are SQL expressions too (no scale: s = 1). ``extra`` maps further
    column names to SQL aggregates (e.g. ``min(propensity)``). Pass only the columns needed
    (none named ``_w``, ``_s`` or ``_y<i>``): the frame is handed to DuckDB as it is. The sums
    are compensated (``fsum``), so results do not depend on how DuckDB splits the work between
    threads.
    """
    query = sums_query("frame", by, outcomes, weight=weight, scale=scale, extra=extra)
    with duckdb.connect() as con:
        con.register("frame", frame)
        return con.execute(query).df()


def sums_query(
    relation: str,
    by: Sequence[str],
    outcomes: Mapping[str, str],
    *,
    weight: str = "1.0 / propensity",
    scale: str | None = None,
    extra: Mapping[str, str] | None = None,
    quote: Callable[[str], str] = quote_identifier,
    total: str = "fsum",
) -> str:
    """The query of :func:`sufficient_statistics` over ``relation``, in any engine's SQL.

    ``quote`` quotes identifiers and ``total`` names the sum (DuckDB's ``fsum``, Spark's
    ``sum``), so that the readout asks DuckDB and Spark for the same sums.
    """
    keys = ", ".join(quote(k) for k in by)
    s = "" if scale is None else " * _s"
    # The inner query keeps every column (``extra`` may use any); _w, _s, _y<i> are ours.
    inner = [f"({weight}) AS _w", *([] if scale is None else [f"({scale}) AS _s"])]
    sums = [f"count(*) AS n, {total}(_w{s}) AS sw, {total}(_w * _w{s}{s}) AS sw2"]
    for i, (name, expression) in enumerate(outcomes.items()):
        y = f"_y{i}"
        inner.append(f"({expression}) AS {y}")
        sums.append(
            f"{total}(_w * {y}) AS {quote('sw_' + name)}, "
            f"{total}(_w * _w * {y}{s}) AS {quote('sw2_' + name)}, "
            f"{total}(_w * _w * {y} * {y}) AS {quote('sw2y2_' + name)}"
        )
    sums += [f"{aggregate} AS {quote(n)}" for n, aggregate in (extra or {}).items()]
    return (
        f"SELECT {keys}, {', '.join(sums)} "
        f"FROM (SELECT *, {', '.join(inner)} FROM {relation}) AS t "
        f"GROUP BY {keys} ORDER BY {keys}"
    )


def ratio_estimate(
    n: ArrayLike,
    sum_ws: ArrayLike,
    sum_wy: ArrayLike,
    sum_w2y2: ArrayLike,
    sum_w2ys: ArrayLike,
    sum_w2s2: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Per group: the ratio ``sum(w y) / sum(w s)`` and its sandwich variance.

    Elementwise over the groups; with s = 1 (``sum_ws = sum(w)``, ``sum_w2ys = sum(w^2 y)``,
    ``sum_w2s2 = sum(w^2)``) it is the Hajek mean. The variance is NaN for a group of one row:
    a single row shows no spread.
    """
    count, ws, wy, w2y2, w2ys, w2s2 = (
        np.asarray(a, dtype=np.float64) for a in (n, sum_ws, sum_wy, sum_w2y2, sum_w2ys, sum_w2s2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = wy / ws
        squares = w2y2 - 2 * ratio * w2ys + ratio**2 * w2s2
        # Rounding can leave a tiny negative sum of squares for residuals that are all zero.
        var = np.maximum(squares, 0.0) / ws**2 * count / (count - 1)
    return ratio, np.where(count > 1, var, np.nan)


def estimates(moments: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """``moments`` with ``mean_<y>`` (the ratio) and ``var_<y>`` (its variance) per outcome."""
    out = moments.copy()
    for y in outcomes:
        out[f"mean_{y}"], out[f"var_{y}"] = ratio_estimate(
            out["n"], out["sw"], out[f"sw_{y}"], out[f"sw2y2_{y}"], out[f"sw2_{y}"], out["sw2"]
        )
    return out
