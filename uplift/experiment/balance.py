"""The leak guard's per-arm sums, computed by the SQL engine that holds the log.

:mod:`uplift.data.leaks` tests each feature's balance across arms from per-arm weighted sums of
the feature's vector ``z`` (a standardised number and its missing flag, or one-hot levels).
Here the same sums come from aggregate queries over a :class:`LogTable`, so a log that is never
loaded is guarded as one in memory: one pass for the numeric features (with one before it for
their means and spreads) and one per categorical feature, grouped by arm and level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from uplift.data.leaks import (
    ALPHA,
    MAX_LEVELS,
    MIN_EFFECT,
    ColumnSums,
    balance_from_sums,
    leak_check,
    leak_message,
)
from uplift.exceptions import SchemaError
from uplift.experiment.logtable import LogTable

__all__ = ["refuse_table_leaks", "table_balance"]


def refuse_table_leaks(
    table: LogTable,
    allow: Sequence[str] = (),
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> None:
    """:func:`uplift.data.leaks.refuse_leaks` of a log held by an SQL engine."""
    balance = table_balance(table, alpha=alpha, min_effect=min_effect)
    check = leak_check(
        balance, table.features, allow, table.source, table.propensity_given,
        alpha=alpha, min_effect=min_effect,
    )  # fmt: skip
    if not check.passed:
        raise SchemaError(leak_message(check, table.control, table.source))


def table_balance(
    table: LogTable, *, alpha: float = ALPHA, min_effect: float = MIN_EFFECT
) -> pd.DataFrame:
    """:func:`uplift.data.leaks.balance_table` of a log held by an SQL engine."""
    numeric = [f for f in table.features if table.kinds[f] in ("numeric", "time")]
    sw, sw2, numeric_sums = _numeric_sums(table, numeric)
    sums = [
        (name, numeric_sums[name] if name in numeric_sums else _level_sums(table, name))
        for name in table.features
    ]
    return balance_from_sums(sums, table.arms, sw, sw2, alpha=alpha, min_effect=min_effect)


def _value(table: LogTable, name: str) -> str:
    column = table.dialect.quote(name)
    if table.kinds[name] == "time":
        # Seconds, as a number: the test is the same in any unit and from any origin.
        if table.dialect.name == "spark":
            return f"(unix_micros(CAST({column} AS TIMESTAMP)) / 1e6)"
        return f"(epoch_us({column}) / 1e6)"
    return f"CAST({column} AS DOUBLE)"


def _missing(table: LogTable, name: str) -> str:
    column = table.dialect.quote(name)
    if table.kinds[name] == "numeric":
        return f"({column} IS NULL OR isnan(CAST({column} AS DOUBLE)))"
    return f"({column} IS NULL)"


def _numeric_sums(
    table: LogTable, names: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, ColumnSums]]:
    """The arms' sums of w and w^2, and each numeric feature's sums (its standardised value,
    0 where missing, and its missing flag when it has gaps)."""
    total, count = table.dialect.total, table.dialect.count_if
    profile = ["count(*) AS n"]
    for i, name in enumerate(names):
        present = f"CASE WHEN NOT {_missing(table, name)} THEN {_value(table, name)} END"
        profile += [f"avg({present}) AS a{i}", f"stddev_pop({present}) AS s{i}"]
        profile.append(f"{count(_missing(table, name))} AS m{i}")
    found = table.query(f"SELECT {', '.join(profile)} FROM log").iloc[0]
    inner = ["arm", "1.0 / propensity AS w"]
    sums = [f"{total}(w) AS sw", f"{total}(w * w) AS sw2"]
    params: list[float] = []
    gaps = {}
    for i, name in enumerate(names):
        mean, spread = float(found[f"a{i}"]), float(found[f"s{i}"])
        gaps[name] = int(found[f"m{i}"]) > 0
        if spread > 0 and np.isfinite(spread):
            inner.append(
                f"CASE WHEN {_missing(table, name)} THEN 0.0 "
                f"ELSE ({_value(table, name)} - ?) / ? END AS f{i}"
            )
            params += [mean, spread]
        else:
            inner.append(f"0.0 AS f{i}")
        inner.append(f"CASE WHEN {_missing(table, name)} THEN 1.0 ELSE 0.0 END AS g{i}")
        for weight, tag in (("w", "1"), ("w * w", "2")):
            sums += [f"{total}({weight} * f{i}) AS f{tag}_{i}",
                     f"{total}({weight} * f{i} * f{i}) AS ff{tag}_{i}",
                     f"{total}({weight} * g{i}) AS g{tag}_{i}"]  # fmt: skip
    grouped = (
        table.query(
            f"SELECT arm, {', '.join(sums)} FROM (SELECT {', '.join(inner)} FROM log) AS t "
            "GROUP BY arm",
            params,
        )
        .set_index("arm")
        .loc[list(table.arms)]
    )
    out = {}
    for i, name in enumerate(names):
        columns = {}
        for tag in ("1", "2"):
            f, ff = grouped[f"f{tag}_{i}"].to_numpy(), grouped[f"ff{tag}_{i}"].to_numpy()
            g = grouped[f"g{tag}_{i}"].to_numpy()
            if gaps[name]:
                # The value is 0 where the flag is 1: the cross term is 0, the flag's square is it.
                z = np.column_stack([f, g])
                zz = np.zeros((len(f), 2, 2))
                zz[:, 0, 0], zz[:, 1, 1] = ff, g
            else:
                z, zz = f[:, None], ff[:, None, None]
            columns[tag] = (z, zz)
        out[name] = ColumnSums("numeric", columns["1"][0], columns["2"][0],
                               columns["1"][1], columns["2"][1])  # fmt: skip
    return grouped["sw"].to_numpy(), grouped["sw2"].to_numpy(), out


def _level_sums(table: LogTable, name: str) -> ColumnSums:
    """Sums of w and w^2 per arm and level: the most frequent levels, "other", "missing"."""
    total = table.dialect.total
    column = table.dialect.quote(name)
    found = table.query(
        f"SELECT arm, {column} AS v, count(*) AS n, {total}(1.0 / propensity) AS w1, "
        f"{total}(1.0 / (propensity * propensity)) AS w2 FROM log GROUP BY arm, {column}"
    )
    present = found[found["v"].notna()]
    counts = present.groupby("v", sort=False)["n"].sum()
    order = _by_frequency(table, name, counts)
    top = list(order[:MAX_LEVELS])
    code = {level: i for i, level in enumerate(top)}
    levels = len(top) + 2
    arms = list(table.arms)
    codes = np.array(
        [levels - 1 if pd.isna(v) else code.get(v, len(top)) for v in found["v"]], dtype=np.intp
    )
    arm_index = pd.Index(arms).get_indexer(pd.Index(found["arm"]))
    joint = arm_index * levels + codes
    size = len(arms) * levels
    swz = np.bincount(joint, found["w1"].to_numpy(float), size).astype(np.float64)
    sw2z = np.bincount(joint, found["w2"].to_numpy(float), size).astype(np.float64)
    swz, sw2z = swz.reshape(len(arms), levels), sw2z.reshape(len(arms), levels)
    diagonal = np.arange(levels)
    swzz = np.zeros((len(arms), levels, levels))
    sw2zz = np.zeros((len(arms), levels, levels))
    swzz[:, diagonal, diagonal] = swz  # one-hot: z z' is diagonal, z_j^2 = z_j
    sw2zz[:, diagonal, diagonal] = sw2z
    return ColumnSums("levels", swz, sw2z, swzz, sw2zz)


def _by_frequency(table: LogTable, name: str, counts: pd.Series) -> list[object]:
    """Levels from the most frequent down; ties in order of first appearance, as the log
    reader's ``pandas.factorize`` orders them (looked up only when a tie decides the top)."""
    ranked = counts.sort_values(ascending=False, kind="stable")
    if len(ranked) <= MAX_LEVELS or ranked.iloc[MAX_LEVELS - 1] != ranked.iloc[MAX_LEVELS]:
        return list(ranked.index)
    column = table.dialect.quote(name)
    first = table.query(
        f"SELECT v, min(r) AS r FROM (SELECT {column} AS v, {table.dialect.row_number} AS r "
        f"FROM log) AS t WHERE v IS NOT NULL GROUP BY v"
    ).set_index("v")["r"]
    frame = pd.DataFrame({"n": counts, "first": first.reindex(counts.index)})
    return list(frame.sort_values(["n", "first"], ascending=[False, True]).index)
