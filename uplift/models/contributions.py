"""Exact tree SHAP contributions of a booster's raw score, summed by family of causes, at the
speed of the compiled tree evaluator (see :func:`contribution_forest`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.data.causes import FAMILIES, OTHER
from uplift.models.base import FloatArray
from uplift.models.trees import Forest, compiled

if TYPE_CHECKING:
    from uplift.models.trees import Booster

__all__ = [
    "CAUSES",
    "CAUSE_LABELS",
    "NO_CAUSE",
    "FamilyForest",
    "contribution_forest",
    "dominant_cause",
    "dominant_codes",
    "logit_column",
    "tree_shap",
]

#: The columns of the family contributions: the five families, then "other".
CAUSES: tuple[str, ...] = (*FAMILIES, OTHER)
#: The cause of an order no family pushes above an average order.
NO_CAUSE = "none"
#: Every value of a cause: the families, then :data:`NO_CAUSE`.
CAUSE_LABELS: tuple[str, ...] = (*CAUSES, NO_CAUSE)
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold, as trees.py reads it
_NUMERIC, _CATEGORICAL = 1, 2


def logit_column(family: str) -> str:
    """The column of ``predict_risk`` holding ``family``'s part of the log-odds."""
    return f"logit_{family}"


# --------------------------------------------------------------------------------------------
# Calibration: small pure functions
# --------------------------------------------------------------------------------------------


def dominant_cause(logits: FloatArray) -> tuple[pd.Categorical[str], FloatArray]:
    """Per row of ``logits`` (rows x :data:`CAUSES`): the family of the largest part
    (:data:`NO_CAUSE` when none is above 0) and that part over the sum of the positive parts
    (NaN for none)."""
    codes, share = dominant_codes(logits)
    cause = pd.Categorical.from_codes(codes, categories=pd.Index(CAUSE_LABELS))
    return cause, share


def dominant_codes(logits: FloatArray) -> tuple[NDArray[np.int64], FloatArray]:
    """:func:`dominant_cause` as positions in :data:`CAUSE_LABELS` (no pandas: a service
    scoring one order at a time cannot afford a Categorical per call)."""
    top = logits.argmax(axis=1)
    largest = logits[np.arange(len(logits)), top]
    positive = np.where(logits > 0, logits, 0.0).sum(axis=1)
    risky = largest > 0
    codes = np.where(risky, top, len(CAUSES)).astype(np.int64)
    share = np.divide(largest, positive, out=np.full(len(logits), np.nan), where=risky)
    return codes, share


@dataclass(frozen=True, eq=False)
class FamilyForest:
    """The tree SHAP values of one booster summed by family, as one :class:`Forest` model.

    Its last input is the family, which the evaluator treats as an S-learner's arm: arm a adds
    up the contributions to family ``CAUSES[a]``. Each tree is then looked up once per order
    and its table holds the parts of every family (zeros for the families it does not touch).
    """

    forest: Forest
    #: The booster's raw score averaged over its training rows: where the parts start.
    expected_value: float

    def evaluate(self, columns: Sequence[FloatArray], threads: int) -> FloatArray:
        """Each family's part of the raw score (rows x :data:`CAUSES`) of the inputs
        ``columns`` (read as the booster reads a frame, one array each)."""
        rows = len(columns[0]) if len(columns) else 0
        if not len(self.forest.tree_model) or not rows:
            return np.zeros((rows, len(CAUSES)))  # no tree splits: all is expected value
        family = len(self.forest.kind) - 1
        return self.forest.evaluate(columns, threads, arm_feature=family, arms=len(CAUSES))


def contribution_forest(booster: Booster, family: NDArray[np.int64]) -> FamilyForest | None:
    """Tables of ``booster``'s exact tree SHAP values summed by family (``family[f]``: the
    :data:`CAUSES` column of input f), or None when the booster's trees have no tables (see
    :mod:`uplift.models.trees`) or a table cell cannot be reproduced.

    For every tree and every cell of its table (a combination of the classes of its inputs),
    one order that falls in the cell is made up and :func:`tree_shap` computes its SHAP values
    for that tree: they depend on the order only through the cell. The cell's leaf, read from
    the table, must equal the SHAP values' sum, or the cell was missed.
    """
    if compiled() is None:
        return None
    forest = Forest.of([booster])
    if forest is None:
        return None
    roots = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    sizes = np.diff(np.append(forest.table_start, forest.table.size)).astype(np.int64)
    tables: list[tuple[int, FloatArray]] = []
    for t in range(len(forest.tree_model)):
        inputs = range(int(forest.input_start[t]), int(forest.input_start[t + 1]))
        if not len(inputs):
            continue  # a tree of one leaf: all of it is expected value
        features = [int(forest.input_feature[k]) for k in inputs]
        choices = [_classes(forest, k, f) for k, f in zip(inputs, features, strict=True)]
        cells = list(itertools.product(*choices))
        offsets = np.array([sum(o for o, _ in cell) for cell in cells], dtype=np.int64)
        rows = np.full((len(cells), len(forest.kind)), np.nan)
        for j, f in enumerate(features):
            rows[:, f] = [cell[j][1] for cell in cells]
        shap = tree_shap(roots[t], rows)
        leaf = forest.table[int(forest.table_start[t]) + offsets]
        if not np.allclose(shap.sum(axis=1), leaf, rtol=0, atol=1e-9):
            return None
        # One table per family, one after the other: the family's input offsets into it.
        table = np.zeros((len(CAUSES), sizes[t]))
        for column in sorted({int(family[f]) for f in features}):
            mine = [f for f in features if family[f] == column]
            table[column, offsets] = shap[:, mine].sum(axis=1)
        tables.append((t, table))
    expected = float(sum(_expectation(root) for root in roots))
    return FamilyForest(_by_family(forest, tables), expected)


# --------------------------------------------------------------------------------------------
# Tree SHAP of one tree, as LightGBM computes it
# --------------------------------------------------------------------------------------------


def tree_shap(root: dict[str, Any], rows: FloatArray) -> FloatArray:
    """Exact SHAP values of one tree of ``booster.dump_model()`` at ``rows`` (rows x inputs):
    rows x (inputs + 1), the last column the tree's expected value. That is what LightGBM's
    ``predict(pred_contrib=True)`` gives for the tree alone, without LightGBM.

    The value of a set S of inputs is the tree's expected output when the inputs in S follow the
    row and the others split as the training rows did (the counts of the tree's nodes): the
    path-dependent definition LightGBM's tree SHAP computes. A tree of 7 leaves splits on at
    most 6 inputs, so every subset of them is evaluated outright (64 at most) for all rows at
    once, and the Shapley weights combine them.
    """
    features = sorted({int(node["split_feature"]) for node in _splits(root)})
    m = len(features)
    subsets = np.arange(1 << m)
    bit = {f: 1 << j for j, f in enumerate(features)}
    value = _subset_values(root, rows, subsets, bit)
    out = np.zeros((len(rows), rows.shape[1] + 1))
    sizes = np.array([bin(s).count("1") for s in subsets])
    for j, f in enumerate(features):
        without = subsets[(subsets & (1 << j)) == 0]
        size = sizes[without]
        weight = np.array(
            [math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in size]
        )
        out[:, f] = weight @ (value[without | (1 << j)] - value[without])
    out[:, -1] = value[0]
    return out


def _subset_values(
    node: dict[str, Any], rows: FloatArray, subsets: NDArray[np.int64], bit: dict[int, int]
) -> FloatArray:
    """The expected output below ``node`` (subsets x rows): an input in the subset follows the
    row; any other sends the rows both ways in proportion to the training counts."""
    if "split_feature" not in node:
        return np.full((len(subsets), len(rows)), float(node["leaf_value"]))
    f = int(node["split_feature"])
    left = _subset_values(node["left_child"], rows, subsets, bit)
    right = _subset_values(node["right_child"], rows, subsets, bit)
    follows = np.where(_goes_left(node, rows[:, f]), left, right)
    n_left, n_right = _count(node["left_child"]), _count(node["right_child"])
    average = (n_left * left + n_right * right) / _count(node)
    return np.where(((subsets & bit[f]) != 0)[:, None], follows, average)


def _goes_left(node: dict[str, Any], x: FloatArray) -> NDArray[np.bool_]:
    """LightGBM 4's decision at a split node for the values ``x`` of its input (see
    :mod:`uplift.models.trees` for the rules)."""
    nan = np.isnan(x)
    if node["decision_type"] == "==":
        categories = [int(c) for c in str(node["threshold"]).split("||")]
        valid = ~nan & (x > -1.0)  # int() truncates towards 0: (-1, 0) is category 0
        codes = np.where(valid, x, -1.0).astype(np.int64)
        return valid & np.isin(codes, categories)
    missing, default = node["missing_type"], bool(node["default_left"])
    value = np.where(nan, 0.0, x)  # NaN reads as 0 unless its missing type is NaN
    if missing == "NaN":
        defaulted = nan
    elif missing == "Zero":
        defaulted = (value >= -_ZERO) & (value <= _ZERO)
    else:
        defaulted = np.zeros(len(x), dtype=bool)
    return np.where(defaulted, default, value <= float(node["threshold"]))


def _splits(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "split_feature" not in node:
        return []
    return [node, *_splits(node["left_child"]), *_splits(node["right_child"])]


def _count(node: dict[str, Any]) -> float:
    return float(node["leaf_count"] if "split_feature" not in node else node["internal_count"])


def _expectation(node: dict[str, Any]) -> float:
    """The tree's output averaged over its training rows (its SHAP values' starting point)."""
    if "split_feature" not in node:
        return float(node["leaf_value"])
    left, right = node["left_child"], node["right_child"]
    total = _count(left) * _expectation(left) + _count(right) * _expectation(right)
    return total / _count(node)


def _classes(forest: Forest, k: int, f: int) -> list[tuple[int, float]]:
    """(table offset, a value of input f in it) for every class of input k of a tree: the
    classes of values the tree's splits on f tell apart, as the Forest bins them."""
    values = _bin_values(forest, f)
    offsets = forest.lut[int(forest.lut_start[k]) : int(forest.lut_start[k]) + len(values)]
    found: dict[int, float] = {}
    for offset, value in zip(offsets.tolist(), values, strict=True):
        if value is not None:
            found.setdefault(int(offset), value)
    return sorted(found.items())


def _bin_values(forest: Forest, f: int) -> list[float | None]:
    """A value of input f in each of the Forest's bins of it (None: no value falls there).

    A numeric input's bin is the number of its thresholds below the value; past them come NaN
    and zero (|x| <= 1e-35). A categorical input's bin is its category, then anything else.
    """
    if forest.kind[f] == _CATEGORICAL:
        return [*(float(c) for c in range(int(forest.levels[f]))), math.nan]
    if forest.kind[f] != _NUMERIC:
        return [math.nan]
    grid = forest.thresholds[int(forest.threshold_start[f]) : int(forest.threshold_start[f + 1])]
    edges = [-math.inf, *grid.tolist(), math.inf]
    values: list[float | None] = []
    for low, high in itertools.pairwise(edges):
        candidates = (high, math.nextafter(low, math.inf), high - 1.0, low + 1.0, (low + high) / 2)
        inside = [v for v in candidates if math.isfinite(v) and low < v <= high and abs(v) > _ZERO]
        values.append(inside[0] if inside else None)
    return [*values, math.nan, 0.0]


def _by_family(forest: Forest, tables: Sequence[tuple[int, FloatArray]]) -> Forest:
    """One Forest model of the trees ``tables`` names (families x cells each), with the family
    as a last, categorical input of ``len(CAUSES)`` levels: family a adds a x cells."""
    family = len(forest.kind)
    tree_model, input_start, input_feature, lut_start = [], [0], [], []
    luts, lut_size = [forest.lut], len(forest.lut)
    table_start, size = [], 0
    for t, table in tables:
        inputs = slice(int(forest.input_start[t]), int(forest.input_start[t + 1]))
        tree_model.append(0)
        input_feature.extend([*forest.input_feature[inputs].tolist(), family])
        lut_start.extend([*forest.lut_start[inputs].tolist(), lut_size])
        luts.append(np.arange(len(CAUSES), dtype=np.uint32) * table.shape[1])
        lut_size += len(CAUSES)
        input_start.append(len(input_feature))
        table_start.append(size)
        size += table.size
    return Forest(
        kind=np.append(forest.kind, _CATEGORICAL),
        thresholds=forest.thresholds,
        threshold_start=np.append(forest.threshold_start, forest.threshold_start[-1]),
        levels=np.append(forest.levels, len(CAUSES)),
        tree_model=np.asarray(tree_model, dtype=np.int64),
        input_start=np.asarray(input_start, dtype=np.int64),
        input_feature=np.asarray(input_feature, dtype=np.int64),
        lut_start=np.asarray(lut_start, dtype=np.int64),
        lut=np.concatenate(luts).astype(np.uint32),
        table_start=np.asarray(table_start, dtype=np.uint64),
        table=np.concatenate([np.empty(0), *(table.ravel() for _, table in tables)]),
        sigmoid=np.zeros(1),
    )


# --------------------------------------------------------------------------------------------
# The risk model
# --------------------------------------------------------------------------------------------
