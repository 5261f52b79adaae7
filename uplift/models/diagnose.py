"""Diagnose: a reason in plain words for every order's best arm, and where each arm helps or harms.

The reasons come from the model, not from hand-written rules: a shallow decision tree (a
policy tree) is fitted to the arm the model's effects pick for each order, and the path to an
order's leaf becomes its reason, e.g. ``"payment state is pending: payment rescue"``. How often
the tree's arm equals the model's arm (fidelity) says how far the reasons can be trusted.

All functions are pure: they take a feature frame and a frame of per-arm effects (one column
per treatment arm, indexed like the features), and return new frames.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from uplift.exceptions import SchemaError, check_option, describe_rows

Outcome = Literal["retained", "revenue"]
OUTCOMES: tuple[Outcome, ...] = ("retained", "revenue")
Direction = Literal["helps", "harms"]

# Columns with at most this many distinct values are read as categories, not as numbers.
MAX_LEVELS = 10
# Rarer categories than the most frequent ones are left out of the tree's candidate splits.
MAX_CATEGORIES = 20
NO_ACTION = "no action"


@dataclass(frozen=True)
class ArmReasons:
    """Reasons for the best arm of every order, from a policy tree fitted to the model's choices.

    Attributes
    ----------
    orders : DataFrame
        Indexed like the features. ``arm`` (the model's best arm), ``tree_arm`` (the arm of the
        order's leaf), ``matches_model`` (bool), ``leaf`` (tree node id), ``reason`` (the leaf's
        conditions and the order's arm in words).
    rules : DataFrame
        One row per leaf, most orders first: ``leaf``, ``arm``, ``rule`` (conditions in words),
        ``orders``, ``share`` (of all orders), ``fidelity`` (share of the leaf's orders whose
        model arm is the leaf's arm), ``mean_effect`` (mean effect of the leaf's arm there; 0
        for the control arm).
    fidelity : float
        Share of all orders whose tree arm equals the model's arm.
    """

    orders: pd.DataFrame
    rules: pd.DataFrame
    fidelity: float


@dataclass(frozen=True)
class _Column:
    """One encoded column of the tree's input: a numeric feature or one category of a feature."""

    feature: str
    category: str | None
    integer: bool
    binary: bool
    has_missing: bool


def arm_uplift(effects: pd.DataFrame, outcome: Outcome = "retained") -> pd.DataFrame:
    """Select ``<outcome>_uplift_<arm>`` columns of predicted effects, renamed to the arm names."""
    check_option("outcome", outcome, OUTCOMES)
    prefix = f"{outcome}_uplift_"
    picked = [c for c in effects.columns if str(c).startswith(prefix)]
    if not picked:
        raise SchemaError(
            f"effects: no column starts with {prefix!r}; got {list(effects.columns)}. "
            "Pass the frame from UpliftModel.predict_effects, or one column per arm."
        )
    return effects[picked].rename(columns=lambda c: str(c)[len(prefix) :])


def best_arms(effects: pd.DataFrame, *, control: str = "control") -> pd.Series:
    """The arm with the largest effect per order; the control arm where no effect is above 0."""
    _check_effects(effects, control)
    values = effects.to_numpy(dtype=float)
    best = np.asarray(effects.columns, dtype=object)[values.argmax(axis=1)]
    best = np.where(values.max(axis=1) > 0, best, control)
    return pd.Series(best, index=effects.index, name="arm", dtype=object)


def explain_arms(
    features: pd.DataFrame,
    effects: pd.DataFrame,
    *,
    control: str = "control",
    chosen: pd.Series | None = None,
    max_depth: int = 3,
    min_leaf_share: float = 0.01,
    max_fit_orders: int = 200_000,
    seed: int = 0,
) -> ArmReasons:
    """Explain every order's best arm with the path of a shallow tree fitted to the model's arms.

    Parameters
    ----------
    features : DataFrame
        The order features the model saw (numbers, booleans or categories).
    effects : DataFrame
        Per-arm effect of each order, one column per treatment arm (e.g. retained uplift, or
        net value), indexed like ``features``.
    control : str
        Name of the control arm ("no action").
    chosen : Series, optional
        The arm given to each order (e.g. by a policy with capacities); by default the arm with
        the largest positive effect (:func:`best_arms`).
    max_depth : int
        Depth of the tree: at most this many conditions per reason.
    min_leaf_share : float
        Smallest leaf, as a share of the orders, so no reason rests on a handful of orders.
    max_fit_orders : int
        The tree is fitted on a random subsample of at most this many orders (then applied to
        all), which keeps the cost flat for large queues.
    seed : int
        Seed of the subsample and of the tree.

    Returns
    -------
    ArmReasons
    """
    _check_features(features, effects)
    arms = (
        best_arms(effects, control=control)
        if chosen is None
        else _check_chosen(chosen, effects, control)
    )
    matrix, columns = _encode(features)
    rng = np.random.default_rng(seed)
    fit_rows = np.arange(len(matrix))
    if len(fit_rows) > max_fit_orders:
        fit_rows = np.sort(rng.choice(fit_rows, size=max_fit_orders, replace=False))
    tree = DecisionTreeClassifier(
        max_depth=max_depth,
        min_samples_leaf=max(1, math.ceil(min_leaf_share * len(fit_rows))),
        random_state=int(rng.integers(2**31 - 1)),
    ).fit(matrix[fit_rows], arms.to_numpy()[fit_rows])
    leaves = tree.apply(matrix)
    rules = _leaf_rules(tree, columns)
    tree_arm = pd.Series(leaves, index=features.index).map(rules["arm"])
    reason = (
        pd.Series(leaves, index=features.index).map(rules["rule"])
        + ": "
        + _arm_words(arms, control)
    )
    orders = pd.DataFrame(
        {
            "arm": arms,
            "tree_arm": tree_arm,
            "matches_model": tree_arm == arms,
            "leaf": leaves,
            "reason": reason,
        },
        index=features.index,
    )
    return ArmReasons(
        orders=orders,
        rules=_rule_table(orders, effects, rules, control),
        fidelity=float(orders["matches_model"].mean()),
    )


def segment_table(
    features: pd.DataFrame,
    effects: pd.DataFrame,
    *,
    bins: int = 4,
    top: int = 3,
    min_orders: int | None = None,
) -> pd.DataFrame:
    """For each arm, the segments where its mean effect is highest and where it is most negative.

    Segments are the values of categorical (or few-valued) features and the quantile bins of
    numeric ones. Segments smaller than ``min_orders`` (default: 1% of the orders, at least 30)
    are left out, so a table row never rests on a few orders.

    Returns
    -------
    DataFrame
        ``arm, direction ("helps" / "harms"), rank, feature, segment, orders, mean_effect,
        arm_mean_effect`` (the arm's mean over all orders). "harms" rows have a negative
        ``mean_effect``; an arm that harms nowhere has none.
    """
    _check_features(features, effects)
    _check_effects(effects, control=None)
    floor = max(30, math.ceil(0.01 * len(features))) if min_orders is None else min_orders
    long = pd.concat([_segment_means(features[name], effects, bins) for name in features.columns])
    long = long[long["orders"] >= floor]
    overall = effects.mean()
    tables = []
    for arm in effects.columns:
        rows = long[long["arm"] == arm]
        helps = rows.nlargest(top, "mean_effect").assign(direction="helps")
        harms = (
            rows[rows["mean_effect"] < 0].nsmallest(top, "mean_effect").assign(direction="harms")
        )
        for part in (helps, harms):
            tables.append(
                part.assign(rank=np.arange(1, len(part) + 1), arm_mean_effect=overall[arm])
            )
    columns = [
        "arm",
        "direction",
        "rank",
        "feature",
        "segment",
        "orders",
        "mean_effect",
        "arm_mean_effect",
    ]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)[columns]


def _check_effects(effects: pd.DataFrame, control: str | None) -> None:
    if effects.shape[1] == 0 or len(effects) == 0:
        raise SchemaError(
            f"effects: need at least one order and one arm; got shape {effects.shape}"
        )
    if control is not None and control in effects.columns:
        raise SchemaError(
            f"effects: column {control!r} is the control arm; pass one column per treatment arm"
        )
    non_numeric = [c for c in effects.columns if not pd.api.types.is_numeric_dtype(effects[c])]
    if non_numeric:
        raise SchemaError(f"effects: columns {non_numeric} are not numeric")
    missing = effects.index[effects.isna().any(axis=1).to_numpy()]
    if len(missing):
        raise SchemaError(f"effects: missing values in {describe_rows(missing)}")


def _check_features(features: pd.DataFrame, effects: pd.DataFrame) -> None:
    if features.shape[1] == 0:
        raise SchemaError("features: no feature columns to explain the arms with")
    if not features.index.equals(effects.index):
        raise SchemaError(
            f"features ({len(features)} rows) and effects ({len(effects)} rows) must share the "
            "same index, in the same order: predict the effects from these features"
        )


def _check_chosen(chosen: pd.Series, effects: pd.DataFrame, control: str) -> pd.Series:
    if not chosen.index.equals(effects.index):
        raise SchemaError("chosen: must be indexed like the effects, in the same order")
    unknown = chosen.index[~chosen.isin([control, *effects.columns]).to_numpy()]
    if len(unknown):
        raise SchemaError(
            f"chosen: arms outside {[control, *effects.columns]} in {describe_rows(unknown)}"
        )
    return chosen.astype(object).rename("arm")


def _is_categorical(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _encode(features: pd.DataFrame) -> tuple[np.ndarray, list[_Column]]:
    """Numbers stay numbers; each frequent category becomes one 0/1 column."""
    blocks: list[np.ndarray] = []
    columns: list[_Column] = []
    for name in features.columns:
        column = features[name]
        if _is_categorical(column):
            text = column.astype(str).where(column.notna(), "missing")
            for value in text.value_counts().index[:MAX_CATEGORIES]:
                blocks.append((text == value).to_numpy(dtype=np.float32))
                columns.append(_Column(str(name), str(value), False, False, False))
        else:
            values = column.to_numpy(dtype=float)
            seen = values[~np.isnan(values)]
            blocks.append(values.astype(np.float32))
            columns.append(
                _Column(
                    feature=str(name),
                    category=None,
                    integer=bool(np.all(np.mod(seen, 1) == 0)),
                    binary=bool(np.isin(seen, (0, 1)).all()),
                    has_missing=len(seen) < len(values),
                )
            )
    return np.column_stack(blocks), columns


def _leaf_rules(tree: DecisionTreeClassifier, columns: list[_Column]) -> pd.DataFrame:
    """The conditions on the path to each leaf, in words, and the leaf's majority arm."""
    nodes = tree.tree_
    parent: dict[int, tuple[int, bool]] = {}
    for node in range(nodes.node_count):
        if nodes.children_left[node] != -1:
            parent[int(nodes.children_left[node])] = (node, True)
            parent[int(nodes.children_right[node])] = (node, False)
    rows = []
    for leaf in np.flatnonzero(nodes.children_left == -1):
        path: list[tuple[int, bool]] = []
        node = int(leaf)
        while node in parent:
            node, went_left = parent[node]
            path.append((node, went_left))
        steps = [
            (
                columns[nodes.feature[n]],
                left,
                float(nodes.threshold[n]),
                _missing_left(nodes, n) == left,
            )
            for n, left in reversed(path)
        ]
        arm = tree.classes_[int(np.argmax(nodes.value[leaf][0]))]
        rows.append({"leaf": int(leaf), "arm": arm, "rule": _describe_path(steps)})
    return pd.DataFrame(rows).set_index("leaf", drop=False)


def _missing_left(nodes: object, node: int) -> bool:
    return bool(nodes.missing_go_to_left[node])  # type: ignore[attr-defined]


def _describe_path(steps: list[tuple[_Column, bool, float, bool]]) -> str:
    """Merge the conditions of a path per feature, in the order the tree first used them."""
    order: list[str] = []
    equal: dict[str, str] = {}
    not_equal: dict[str, list[str]] = {}
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    with_missing: dict[str, bool] = {}
    kind: dict[str, _Column] = {}
    for column, went_left, threshold, takes_missing in steps:
        name = column.feature
        if name not in kind:
            order.append(name)
            kind[name] = column
        if column.category is not None:
            if went_left:
                not_equal.setdefault(name, []).append(column.category)
            else:
                equal[name] = column.category
        else:
            if went_left:
                upper[name] = min(upper.get(name, math.inf), threshold)
            else:
                lower[name] = max(lower.get(name, -math.inf), threshold)
            with_missing[name] = with_missing.get(name, True) and takes_missing
    parts = []
    for name in order:
        words = name.replace("_", " ")
        column = kind[name]
        if column.category is not None:
            if name in equal:
                parts.append(f"{words} is {equal[name]}")
            else:
                parts.append(f"{words} is not {' or '.join(not_equal[name])}")
            continue
        text = _numeric_words(words, column, lower.get(name, -math.inf), upper.get(name, math.inf))
        if column.has_missing and with_missing[name]:
            text += " (or unknown)"
        parts.append(text)
    return ", ".join(parts) if parts else "all orders"


def _numeric_words(words: str, column: _Column, low: float, high: float) -> str:
    """``low < x <= high`` in words; integer features read as whole numbers, 0/1 as yes / no."""
    if column.binary:
        return f"{words}: {'yes' if low > -math.inf else 'no'}"
    if column.integer:
        first = math.floor(low) + 1 if low > -math.inf else None
        last = math.floor(high) if high < math.inf else None
        if first is not None and last is not None:
            return f"{words} {first} to {last}" if first != last else f"{words} {first}"
        return f"{words} <= {last}" if first is None else f"{words} >= {first}"
    if low > -math.inf and high < math.inf:
        return f"{words} > {low:.4g} and <= {high:.4g}"
    return f"{words} <= {high:.4g}" if low == -math.inf else f"{words} > {low:.4g}"


def _arm_words(arms: pd.Series, control: str) -> pd.Series:
    """Arm names as a CX agent reads them; the control arm means no action."""
    words = arms.astype(str).str.replace("_", " ", regex=False)
    return words.where(arms != control, NO_ACTION)


def _rule_table(
    orders: pd.DataFrame, effects: pd.DataFrame, rules: pd.DataFrame, control: str
) -> pd.DataFrame:
    by_leaf = orders.groupby("leaf")
    counts = by_leaf.size()
    # The control arm's effect is 0 by definition (uplift is measured against it).
    leaf_effects = effects.groupby(orders["leaf"].to_numpy()).mean().assign(**{control: 0.0})
    table = rules.loc[counts.index].reset_index(drop=True)
    table["orders"] = counts.to_numpy()
    table["share"] = table["orders"] / len(orders)
    table["fidelity"] = by_leaf["matches_model"].mean().to_numpy()
    table["mean_effect"] = leaf_effects.to_numpy()[
        leaf_effects.index.get_indexer(pd.Index(table["leaf"])),
        leaf_effects.columns.get_indexer(pd.Index(table["arm"])),
    ]
    return table.sort_values("orders", ascending=False, ignore_index=True)


def _segment_means(column: pd.Series, effects: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Mean effect of every arm per segment of one feature (long format)."""
    labels = _segment_labels(column, bins)
    grouped = effects.groupby(labels.to_numpy(), sort=False)
    means = grouped.mean()
    long = (
        means.rename_axis("segment")
        .reset_index()
        .melt(id_vars="segment", var_name="arm", value_name="mean_effect")
    )
    long["orders"] = long["segment"].map(grouped.size()).to_numpy()
    long["feature"] = str(column.name)
    return long


def _segment_labels(column: pd.Series, bins: int) -> pd.Series:
    """Category values as they are; numbers with many values cut at their quantiles."""
    if _is_categorical(column) or column.nunique() <= MAX_LEVELS:
        return column.astype(str).where(column.notna(), "missing")
    edges = np.unique(np.nanquantile(column.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)))
    inner = edges[1:-1]
    names = [f"<= {inner[0]:.4g}"] if len(inner) else ["all"]
    names += [f"> {a:.4g} and <= {b:.4g}" for a, b in itertools.pairwise(inner)]
    names += [f"> {inner[-1]:.4g}"] if len(inner) else []
    codes = np.searchsorted(inner, column.to_numpy(dtype=float), side="left")
    labels = pd.Series(
        np.asarray(names, dtype=object)[np.minimum(codes, len(names) - 1)], index=column.index
    )
    return labels.where(column.notna(), "missing")
