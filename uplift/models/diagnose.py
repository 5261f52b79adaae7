"""Diagnose: a reason in plain words for every order's best arm, and where each arm helps or harms.

The reasons come from the model, not from hand-written rules: a shallow decision tree (a
policy tree) is fitted to the arm the model's effects pick for each order, and the path to an
order's leaf becomes its reason, e.g. ``"payment status is pending or retry failed, dispatch
delay days <= 1: payment rescue"``. The tree weighs each order by how much its choice matters,
so its few splits go where a wrong arm costs most. How often the tree's arm equals the model's
arm (fidelity) and how much of the model's effect its arms keep say how far to trust them.

All functions are pure: they take a feature frame and a frame of per-arm effects (one column
per treatment arm, indexed like the features), and return new frames.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.texts import text_per_pair
from uplift.exceptions import ConfigError, SchemaError, describe_rows
from uplift.models.effects import best_arm

if TYPE_CHECKING:
    from sklearn.tree import DecisionTreeClassifier

FloatArray = NDArray[np.float64]

__all__ = ["ArmReasons", "explain_arms", "segment_table"]

Direction = Literal["helps", "harms"]

# Orders the tree is fitted on at most (a random subsample; the tree is then applied to all).
# A tree of depth 3 with leaves of 1% has at least 500 of them per leaf: on the million orders
# of benchmarks/bench_commands.py the tree fitted on 50,000 is the one fitted on 100,000
# (fidelity 0.670, effect kept 0.750, the same 6 leaves, for seeds 0 and 1), in 0.25 s less.
MAX_FIT_ORDERS = 50_000
# Columns with at most this many distinct values are read as categories, not as numbers.
MAX_LEVELS = 10
# Rarer categories than the most frequent ones are left out of the tree's candidate splits.
MAX_CATEGORIES = 20
NO_ACTION = "no action"
SEGMENT_COLUMNS = (
    "arm",
    "direction",
    "rank",
    "feature",
    "segment",
    "orders",
    "mean_effect",
    "arm_mean_effect",
)


@dataclass(frozen=True)
class ArmReasons:
    """Reasons for the best arm of every order, from a policy tree fitted to the model's choices.

    Attributes
    ----------
    orders : DataFrame
        Indexed like the features. ``arm`` (the model's best arm), ``tree_arm`` (the arm of
        the order's leaf), ``matches_model`` (bool), ``leaf`` (id of the tree node the order's
        rule ends at), ``reason`` (the rule and the order's arm in words; where the leaf's arm
        differs, "usually <leaf arm>, here <arm>").
    rules : DataFrame
        One row per rule, most orders first: ``leaf``, ``arm``, ``rule`` (conditions in
        words), ``orders``, ``share`` (of all orders), ``fidelity`` (share of the rule's orders
        whose model arm is its arm), ``mean_effect`` (mean effect of its arm there; 0 for the
        control arm).
    fidelity : float
        Share of all orders whose tree arm equals the model's arm.
    effect_kept : float
        Total effect of the tree's arms over the total effect of the model's arms: how much of
        the model's value the reasons' simplified policy keeps (1 = all).
    """

    orders: pd.DataFrame
    rules: pd.DataFrame
    fidelity: float
    effect_kept: float


@dataclass(frozen=True)
class _Column:
    """One encoded column of the tree's input: a numeric feature or one category of a feature."""

    feature: str
    category: str | None = None
    integer: bool = False
    binary: bool = False
    has_missing: bool = False
    smallest: float = -math.inf
    largest: float = math.inf
    levels: tuple[str, ...] = ()  # every category of the feature, when all are encoded


def _best_arms(effects: pd.DataFrame, control: str) -> pd.Series:
    """The arm with the largest effect per order; the control arm where no effect is above 0."""
    _check_effects(effects, control)
    best = best_arm(effects.to_numpy(dtype=float), [str(c) for c in effects.columns], control)
    return pd.Series(best, index=effects.index, name="arm", dtype=object)


def explain_arms(
    features: pd.DataFrame,
    effects: pd.DataFrame,
    *,
    control: str = "control",
    chosen: pd.Series | None = None,
    max_depth: int = 3,
    min_leaf_share: float = 0.01,
    max_fit_orders: int = MAX_FIT_ORDERS,
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
        the largest positive effect.
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
    if not (isinstance(max_depth, int) and max_depth >= 1) or not 0 < min_leaf_share < 0.5:
        raise ConfigError(
            "max_depth must be an integer >= 1 and min_leaf_share in (0, 0.5); "
            f"got max_depth={max_depth!r}, min_leaf_share={min_leaf_share!r}"
        )
    arms = (
        _best_arms(effects, control) if chosen is None else _check_chosen(chosen, effects, control)
    )
    # The control arm's effect is 0 by definition: uplift is measured against it.
    with_control = effects.assign(**{control: 0.0})
    values = with_control.to_numpy(dtype=float)
    # Factorised once: a few arms, a million orders; looking each label up costs a second.
    codes, labels = pd.factorize(arms, use_na_sentinel=False)
    position = with_control.columns.get_indexer(pd.Index(labels))[codes]  # every arm's a column
    weights = _choice_weights(values, position)
    encoded = _encode(features)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(features))
    if len(rows) > max_fit_orders:
        rows = np.sort(rng.choice(rows, size=max_fit_orders, replace=False))
    # Imported here: scikit-learn takes a second to import, which `uplift rank` spends while it
    # predicts (see uplift.cli.policy), and reading this module needs none of it.
    from sklearn.tree import DecisionTreeClassifier  # noqa: PLC0415

    tree = DecisionTreeClassifier(
        max_depth=max_depth,
        min_samples_leaf=max(1, math.ceil(min_leaf_share * len(rows))),
        random_state=int(rng.integers(2**31 - 1)),
    ).fit(encoded.matrix(rows), arms.to_numpy()[rows], sample_weight=weights[rows])
    rules = _leaf_rules(tree, encoded.columns)
    leaves = pd.Series(_apply(tree, encoded), index=features.index).map(rules["leaf"])
    rules = rules.drop_duplicates("leaf").set_index("leaf", drop=False)
    tree_arm = leaves.map(rules["arm"])
    leaf_position = with_control.columns.get_indexer(pd.Index(rules["arm"]))
    tree_position = leaves.map(pd.Series(leaf_position, index=rules.index)).to_numpy()
    # The arms as a categorical of the codes above: their texts are not hashed again.
    coded = pd.Categorical.from_codes(codes, categories=pd.Index(labels))
    orders = pd.DataFrame(
        {
            "arm": arms,
            "tree_arm": tree_arm,
            "matches_model": tree_arm == arms,
            "leaf": leaves,
            "reason": _reasons(pd.Categorical(leaves), rules, coded, control),
        },
        index=features.index,
    )
    chosen_effect = _pick(values, position).sum()
    kept = _pick(values, tree_position).sum() / chosen_effect if chosen_effect else math.nan
    return ArmReasons(
        orders=orders,
        rules=_rule_table(orders, with_control, rules),
        fidelity=float(orders["matches_model"].mean()),
        effect_kept=float(kept),
    )


def _pick(values: FloatArray, position: NDArray[np.intp]) -> FloatArray:
    """The effect of each order's arm: column ``position[i]`` of ``values`` (orders x arms)."""
    return values[np.arange(len(values)), position]


def _choice_weights(values: FloatArray, position: NDArray[np.intp]) -> FloatArray:
    """How much each order's choice matters: |effect of its arm - best effect of the others|,
    from the effects ``values`` (orders x arms, control included) and each arm's column.

    Fitting the tree with these weights (policy learning as weighted classification, Zhao et
    al. 2012; Athey and Wager 2021) spends its few splits where a wrong arm costs most, instead
    of on the many orders where every arm does about the same. A floor of 1% of the mean gap
    keeps ties in play, so free splits still label them; equal weights when all gaps are 0.
    """
    own = _pick(values, position)
    others = values.copy()
    others[np.arange(len(values)), position] = -np.inf
    gap = np.abs(own - others.max(axis=1))
    return gap + 0.01 * gap.mean() if gap.sum() > 0 else np.ones(len(gap))


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

    An arm often harms in no segment even where it harms many single orders: a segment is one
    feature at a time, so its mean averages over everything else. In the simulated worlds
    (``uplift simulate``) that is the truth, not an artefact: in the realistic world the true
    retained uplift of reassurance is below 0 for about 27% of the orders and that of delivery
    update for 38% (unobserved per-order responses), yet on every seed tried no segment of
    theirs, nor of expedite or payment rescue, has a negative mean; only agent call's do (loyal
    customers). Fitted models show the same, to the extent their predictions are not noise: on
    the easy world s_lgbm and s_linear predict harm for up to 23% of the orders of each of those
    four arms but in no segment; the floor hides at most a few small segments. So that the
    table is never silently one-sided, an arm and direction without any row gets one row that
    says so.

    Returns
    -------
    DataFrame
        ``arm, direction ("helps" / "harms"), rank, feature, segment, orders, mean_effect,
        arm_mean_effect`` (the arm's mean over all orders), ``note``. "helps" rows have a
        positive ``mean_effect``, "harms" rows a negative one; their ``note`` is empty. Where
        an arm has no such segment, its one row for that direction has ``rank`` 0, empty
        ``feature`` and ``segment``, ``orders`` 0, ``mean_effect`` NaN, and a ``note``: e.g.
        "no segment of >= 200 orders has a negative mean effect (2 smaller ones do), though
        12.5% of orders have a negative effect".
    """
    _check_features(features, effects)
    _check_effects(effects, control=None)
    if not (isinstance(bins, int) and bins >= 2 and isinstance(top, int) and top >= 1):
        raise ConfigError(f"bins must be an integer >= 2 and top >= 1; got {bins!r}, {top!r}")
    floor = max(30, math.ceil(0.01 * len(features))) if min_orders is None else min_orders
    every = pd.concat([_segment_means(features[name], effects, bins) for name in features.columns])
    large = every["orders"] >= floor
    long, small = every[large], every[~large]
    overall = effects.mean()
    tables = []
    for arm in effects.columns:
        rows, smaller = long[long["arm"] == arm], small[small["arm"] == arm]
        for direction, sign in (("helps", 1.0), ("harms", -1.0)):
            found = rows[sign * rows["mean_effect"] > 0]
            part = (
                found.nlargest(top, "mean_effect")
                if sign > 0
                else found.nsmallest(top, "mean_effect")
            )
            if part.empty:
                note = _no_segment_note(effects[arm], smaller, floor, sign)
                part = _no_segment_row(arm, note)
            else:
                part = part.assign(rank=np.arange(1, len(part) + 1), note="")
            tables.append(part.assign(direction=direction, arm_mean_effect=overall[arm]))
    columns = [*SEGMENT_COLUMNS, "note"]
    return pd.concat(tables, ignore_index=True)[columns]


def _no_segment_row(arm: str, note: str) -> pd.DataFrame:
    """The one row of an arm and direction without a segment: rank 0, no orders, the note."""
    return pd.DataFrame(
        {
            "segment": [""],
            "arm": [arm],
            "mean_effect": [math.nan],
            "orders": [0],
            "feature": [""],
            "rank": [0],
            "note": [note],
        }
    )


def _no_segment_note(effect: pd.Series, smaller: pd.DataFrame, floor: int, sign: float) -> str:
    """Why an arm has no segment in one direction: none of the floor's size; smaller segments
    and single orders that do (their effects average out within every large segment)."""
    kind = "positive" if sign > 0 else "negative"
    text = f"no segment of >= {floor:,} orders has a {kind} mean effect"
    below = int((sign * smaller["mean_effect"] > 0).sum())
    if below:
        text += f" ({below} smaller {'one does' if below == 1 else 'ones do'})"
    share = float((sign * effect > 0).mean())
    if share == 0:
        return f"{text}, and no order has a {kind} effect"
    shown = f"{share:.1%}" if share >= 0.001 else "under 0.1%"
    return f"{text}, though {shown} of orders have a {kind} effect"


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


@dataclass(frozen=True)
class _Encoded:
    """The tree's input: numbers stay numbers, each frequent category becomes one 0/1 column.

    ``sources[j]`` gives column j for every order: a feature's values, or a categorical
    feature's level positions and the position that is 1. Rows are encoded only where they
    are read: the tree is fitted on a sample and routes every order by the few columns it
    splits on.
    """

    columns: list[_Column]
    sources: list[tuple[np.ndarray, int | None]]

    def column(self, j: int, rows: NDArray[np.intp]) -> NDArray[np.float32]:
        """Column j at ``rows``, as the tree reads it (float32)."""
        values, level = self.sources[j]
        part = values[rows] if level is None else values[rows] == level
        return np.asarray(part, dtype=np.float32)

    def matrix(self, rows: NDArray[np.intp]) -> NDArray[np.float32]:
        """Every column at ``rows``."""
        # Column by column into one block: each column is written contiguously, which is
        # several times faster than stacking the rows (the tree reads either layout).
        matrix = np.empty((len(rows), len(self.sources)), dtype=np.float32, order="F")
        for j in range(len(self.sources)):
            matrix[:, j] = self.column(j, rows)
        return matrix


def _encode(features: pd.DataFrame) -> _Encoded:
    """The encoding of ``features`` and the description of every column (see _Encoded)."""
    sources: list[tuple[np.ndarray, int | None]] = []
    columns: list[_Column] = []
    for name in features.columns:
        column = features[name]
        if _is_categorical(column):
            label, counts = _labels(column)
            levels = tuple(str(v) for v in counts.index)
            for position, value in enumerate(levels[:MAX_CATEGORIES]):
                sources.append((label, position))  # levels are in the order of the counts
                complete = levels if len(levels) <= MAX_CATEGORIES else ()
                columns.append(_Column(str(name), category=value, levels=complete))
        else:
            values = column.to_numpy(dtype=float)
            seen = values[~np.isnan(values)]
            smallest = float(seen.min()) if len(seen) else -math.inf
            largest = float(seen.max()) if len(seen) else math.inf
            if len(seen) and _beyond_float32(smallest, largest):
                # What scikit-learn says of the tree's input, before it reads a row of it.
                raise ValueError(
                    "Input X contains infinity or a value too large for dtype('float32')."
                )
            sources.append((values, None))
            columns.append(
                _Column(
                    feature=str(name),
                    category=None,
                    # A column of integers holds whole numbers (as floats) and nothing else.
                    integer=pd.api.types.is_integer_dtype(column) or _whole(seen),
                    binary=_binary(seen, smallest, largest),
                    has_missing=len(seen) < len(values),
                    smallest=smallest,
                    largest=largest,
                )
            )
    return _Encoded(columns, sources)


def _beyond_float32(smallest: float, largest: float) -> bool:
    """Whether a column from ``smallest`` to ``largest`` holds a value that is infinite as a
    float32 (the cast is monotonic: then so is one of its ends)."""
    with np.errstate(over="ignore"):
        return bool(np.isinf(np.array([smallest, largest], dtype=np.float32)).any())


def _binary(seen: FloatArray, smallest: float, largest: float) -> bool:
    """Whether every value is 0 or 1 (no value outside [0, 1] first: no pass over them)."""
    if len(seen) and (smallest < 0 or largest > 1):
        return False
    return bool(((seen == 0) | (seen == 1)).all())


def _whole(values: FloatArray) -> bool:
    """Whether every value is a whole number (not inf), checking a first block before all."""
    head = values[:1024]
    if not np.all(np.mod(head, 1) == 0):
        return False
    return bool(np.all(np.mod(values, 1) == 0))


def _apply(tree: DecisionTreeClassifier, encoded: _Encoded) -> NDArray[np.intp]:
    """``tree.apply`` on every order: the leaf each one reaches, reading only the columns the
    tree splits on, and only at the rows that reach each split.

    As the tree compares: a float32 value goes left when ``<=`` the threshold, NaN goes where
    the split sends missing values (:func:`_encode` refused infinity, as scikit-learn does).
    """
    nodes = tree.tree_
    n = len(encoded.sources[0][0]) if encoded.sources else 0
    leaf = np.zeros(n, dtype=np.intp)
    # Children are numbered after their parent: one sweep takes every order down.
    for node in range(nodes.node_count):
        if nodes.children_left[node] == -1:
            continue
        at = np.flatnonzero(leaf == node)
        x = encoded.column(int(nodes.feature[node]), at).astype(np.float64)
        left = np.where(np.isnan(x), _missing_left(nodes, node), x <= nodes.threshold[node])
        leaf[at] = np.where(left, nodes.children_left[node], nodes.children_right[node])
    return leaf


def _labels(column: pd.Series) -> tuple[NDArray[np.intp], pd.Series]:
    """Each order's level of a categorical column as text (missing: "missing"), as positions
    into the counts of the levels, most frequent first (ties in order of first appearance).

    The same as ``value_counts`` of the text, from one factorisation instead of comparing a
    million strings once per level.
    """
    codes, uniques = pd.factorize(column)
    names = np.array([str(u) for u in uniques] + ["missing"], dtype=object)
    first = np.full(len(names), len(codes))
    # Where each name first appears: hashing, not sorting, a million codes.
    firsts = pd.Series(np.where(codes < 0, len(names) - 1, codes)).drop_duplicates()
    first[firsts.to_numpy()] = firsts.index.to_numpy()
    # One id per distinct text (a level written "missing" joins the missing values).
    ids, texts = pd.factorize(names[np.argsort(first, kind="stable")])
    rank = np.empty(len(names), dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = ids
    per_order = rank[np.where(codes < 0, len(names) - 1, codes)]
    counts = pd.Series(
        np.bincount(per_order, minlength=len(texts)), index=pd.Index(texts, dtype=object)
    )
    counts = counts[counts > 0].sort_values(ascending=False, kind="stable")
    position = counts.index.get_indexer(pd.Index(texts, dtype=object))
    return position[per_order], counts


def _leaf_rules(tree: DecisionTreeClassifier, columns: list[_Column]) -> pd.DataFrame:
    """Per tree leaf: its arm, the rule (conditions in words) and the node the rule stops at.

    Splits whose every leaf below picks the same arm change nothing, so a rule stops at the
    highest node whose whole subtree picks its arm; leaves below one such node share a rule.
    """
    nodes = tree.tree_
    left_child, right_child = nodes.children_left, nodes.children_right
    parent: dict[int, tuple[int, bool]] = {}
    arms_below: dict[int, set[str]] = {}
    # Children are numbered after their parent, so a reverse sweep sees them first.
    for node in range(nodes.node_count - 1, -1, -1):
        if left_child[node] == -1:
            arms_below[node] = {str(tree.classes_[int(np.argmax(nodes.value[node][0]))])}
            continue
        parent[int(left_child[node])] = (node, True)
        parent[int(right_child[node])] = (node, False)
        arms_below[node] = arms_below[int(left_child[node])] | arms_below[int(right_child[node])]
    rows = []
    for leaf in np.flatnonzero(left_child == -1):
        top = int(leaf)
        while top in parent and arms_below[parent[top][0]] == arms_below[int(leaf)]:
            top = parent[top][0]
        path: list[tuple[int, bool]] = []
        node = top
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
        (arm,) = arms_below[int(leaf)]
        rows.append({"leaf": top, "arm": arm, "rule": _describe_path(steps)})
    return pd.DataFrame(rows, index=np.flatnonzero(left_child == -1))


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
        words = _plain_words(name)
        column = kind[name]
        if column.category is not None:
            parts.append(_category_words(words, column, equal.get(name), not_equal.get(name, [])))
            continue
        text = _numeric_words(words, column, lower.get(name, -math.inf), upper.get(name, math.inf))
        if column.has_missing and with_missing[name]:
            text += " (or unknown)"
        parts.append(text)
    return ", ".join(parts) if parts else "all orders"


def _category_words(words: str, column: _Column, equal: str | None, excluded: list[str]) -> str:
    """``is A``; ``is not A``; or, when few categories are left, ``is B or C``."""
    if equal is not None:
        return f"{words} is {_plain_words(equal)}"
    left = [v for v in column.levels if v not in excluded]
    if column.levels and len(left) <= max(2, len(excluded) - 1):
        return f"{words} is {' or '.join(_plain_words(v) for v in left)}"
    if len(excluded) == 1:
        return f"{words} is not {_plain_words(excluded[0])}"
    return f"{words} is none of {', '.join(_plain_words(v) for v in excluded)}"


def _plain_words(name: str) -> str:
    return name.replace("_", " ")


def _numeric_words(words: str, column: _Column, low: float, high: float) -> str:
    """``low < x <= high`` in words; integer features read as whole numbers, 0/1 as yes / no."""
    if column.binary:
        return f"{words}: {'yes' if low > -math.inf else 'no'}"
    if column.integer:
        # Whole numbers read as whole: "<= 1.5" is "<= 1"; bounds at the data's ends are dropped.
        first = math.floor(low) + 1 if low > -math.inf else column.smallest
        last = math.floor(high) if high < math.inf else column.largest
        if first == last:
            return f"{words} = {first:g}"
        if first <= column.smallest:
            return f"{words} <= {last:g}"
        if last >= column.largest:
            return f"{words} >= {first:g}"
        return f"{words} {first:g} to {last:g}"
    if low > -math.inf and high < math.inf:
        return f"{words} > {low:.4g} and <= {high:.4g}"
    return f"{words} <= {high:.4g}" if low == -math.inf else f"{words} > {low:.4g}"


def _reasons(
    leaves: pd.Categorical, rules: pd.DataFrame, arms: pd.Categorical, control: str
) -> pd.Categorical:
    """``"<conditions>: <arm>"``; where the order's arm is not its leaf's, both are named."""

    def reason(leaf: int, arm: str) -> str:
        rule, usual = str(rules.at[leaf, "rule"]), str(rules.at[leaf, "arm"])
        if usual == arm:
            return f"{rule}: {_arm_words(arm, control)}"
        return f"{rule}: usually {_arm_words(usual, control)}, here {_arm_words(arm, control)}"

    return text_per_pair(leaves, arms, reason)


def _arm_words(arm: str, control: str) -> str:
    """An arm's name as a CX agent reads it; the control arm means no action."""
    return NO_ACTION if arm == control else _plain_words(str(arm))


def _rule_table(orders: pd.DataFrame, effects: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    by_leaf = orders.groupby("leaf")
    counts = by_leaf.size()
    leaf_effects = effects.groupby(orders["leaf"].to_numpy()).mean()
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
