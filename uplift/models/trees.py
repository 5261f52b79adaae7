"""LightGBM's predictions from our own tree evaluator: the same numbers, several models per pass.

A booster's trees are plain data. :meth:`Forest.of` reads ``booster.dump_model()`` and turns
every tree into a lookup table: each feature the tree splits on is cut into the few classes of
values its splits tell apart, and the table holds the leaf value of every combination of
classes. :func:`_evaluate`, one generic function of this module, bins each row's features and
adds up table entries. numba compiles that function from this file's source; a model only ever
supplies arrays, so no code is generated from a model and nothing compiled is read from a model
folder (numba keeps its machine code in ``__pycache__`` beside this file, as Python keeps
bytecode). That is how prediction keeps the rule "never load compiled code found in a model
folder".

The tables encode LightGBM 4's ``Tree::NumericalDecision`` and ``Tree::CategoricalDecision``
(:meth:`_Features.goes_left`):

* numerical split: left when ``x <= threshold``. NaN counts as 0 unless the split's
  ``missing_type`` is NaN, in which case NaN takes the default side (``default_left``); with
  ``missing_type`` Zero, 0 takes the default side. LightGBM reads |x| <= 1e-35 (its
  ``kZeroThreshold``) as 0;
* categorical split: left when ``int(x)`` is one of the split's categories; NaN, negative
  values and categories beyond the split's go right;
* a row's raw score is the sum of its leaves in tree order, in float64, starting at 0; then the
  objective's transform (sigmoid for ``binary``, identity for ``regression``).

Inputs are read exactly as LightGBM reads a pandas frame (:func:`feature_columns`): numbers as
float64, categorical columns as their codes against the booster's ``pandas_categorical``, -1
as NaN. Tests hold the result to LightGBM's own ``predict`` to 1e-12. Threads take chunks of
rows as they free up, so a core busy with other work holds back only its own chunk.

Several boosters on the same inputs (a T-learner's arms) share one pass over the rows. An
S-learner's arm is an input: :func:`predict_arms` looks up the arm-free part of a tree's table
once per row and only the arm's offset once per arm.

When numba is missing, or a booster uses what the tables do not mirror (another objective,
several trees per iteration, linear trees, no trees at all, a tree whose table would exceed
``MAX_TABLE`` entries), the same functions call ``lightgbm.Booster.predict``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from uplift.models.lgbm_text import TextBooster

if TYPE_CHECKING:
    from typing import TypeAlias

    import lightgbm as lgb

    #: A fitted LightGBM model: LightGBM's own, or a loaded model's text form.
    Booster: TypeAlias = lgb.Booster | TextBooster

__all__ = [
    "MAX_TABLE",
    "Booster",
    "Forest",
    "arms_forest",
    "boosters_forest",
    "compiled",
    "feature_columns",
    "is_booster",
    "predict_arms",
    "predict_boosters",
    "prepare",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Entries of one tree's table above which the booster is left to LightGBM. Each class of an
#: input is a different way through the tree's splits on it, so a tree of n splits needs at
#: most 2^n entries: 64 for our 7 leaves.
MAX_TABLE = 1 << 16
# LightGBM's kZeroThreshold is the float 1e-35f, compared as a double.
ZERO = float(np.float32(1e-35))
NUMERIC, CATEGORICAL = 1, 2
# Rows binned and scored together: their bins stay in the core's cache while every tree is
# looked up.
BLOCK = 512
# Rows a thread takes at a time; a thread that finishes early takes the next chunk, so a core
# busy with other work holds back only its own chunk.
CHUNK = 16 * BLOCK
_LEAF_KEYS = {"leaf_index", "leaf_value", "leaf_weight", "leaf_count"}


def _evaluate(
    columns: FloatArray,
    kind: IntArray,
    thresholds: FloatArray,
    threshold_start: IntArray,
    levels: IntArray,
    arm_feature: int,
    arm_bins: IntArray,
    tree_model: IntArray,
    input_start: IntArray,
    input_feature: IntArray,
    lut_start: IntArray,
    lut: NDArray[np.uint32],
    table_start: NDArray[np.uint64],
    table: FloatArray,
    sigmoid: FloatArray,
    summed: bool,
    out: FloatArray,
) -> None:
    """Write the boosters' predictions to ``out[row, model * arms + arm]``, or with ``summed``
    add them, model after model, to ``out[row, arm]``.

    ``columns[f]`` is input f over the rows. A numeric input's bin is the number of its
    thresholds below x, or, past them, NaN and zero; a categorical input's bin is its category,
    or ``levels[f]`` for anything no split holds. Input k of a tree maps its bin to an offset
    into the tree's table (``lut``). Input ``arm_feature`` (-1: none) takes the bins
    ``arm_bins`` in turn, one column of ``out`` each. A model's trees are consecutive; its sums
    start at 0 and add its trees in order, and ``sigmoid[m]`` > 0 applies LightGBM's binary
    transform to model m. The function calls nothing else of the package, so numba's
    cache of it cannot go stale through another module. Bins and table offsets are unsigned:
    numba then skips its check for negative indices, which costs a third of the time.
    """
    arms = arm_bins.shape[0]
    bins = np.zeros((kind.shape[0], BLOCK), dtype=np.uint32)
    offset = np.empty(BLOCK, dtype=np.uint64)
    leaf = np.empty(BLOCK)
    total = np.zeros((arms, BLOCK))  # one model's sums, arm by arm: adds run along rows
    for first in range(0, columns.shape[1], BLOCK):
        rows = min(columns.shape[1] - first, BLOCK)
        for f in range(kind.shape[0]):
            if kind[f] == NUMERIC:
                start, count = threshold_start[f], threshold_start[f + 1] - threshold_start[f]
                for r in range(rows):
                    x = columns[f, first + r]
                    # How many thresholds lie below x: a binary search whose steps depend on
                    # the number of thresholds only, not on x (no branch to mispredict).
                    low, size = start, count
                    while size > 1:
                        half = size >> 1
                        low = low + half if thresholds[low + half] < x else low
                        size -= half
                    below = low - start + (1 if count > 0 and thresholds[low] < x else 0)
                    if np.isnan(x):
                        below = count + 1
                    elif -ZERO <= x <= ZERO:
                        below = count + 2
                    bins[f, r] = below
            elif kind[f] == CATEGORICAL and f != arm_feature:
                for r in range(rows):
                    x = columns[f, first + r]
                    bins[f, r] = int(x) if -1.0 < x < levels[f] else levels[f]
        model = -1
        for t in range(tree_model.shape[0] + 1):
            if t == tree_model.shape[0] or tree_model[t] != model:
                if model >= 0:  # the model's trees are summed: transform, write out
                    scale = sigmoid[model]
                    for a in range(arms):
                        column = a if summed else model * arms + a
                        for r in range(rows):
                            value = total[a, r]
                            if scale > 0:
                                value = 1.0 / (1.0 + np.exp(-scale * value))
                            if summed:
                                out[first + r, column] += value
                            else:
                                out[first + r, column] = value
                if t == tree_model.shape[0]:
                    break
                model = tree_model[t]
                total[:, :rows] = 0.0
            offset[:rows] = table_start[t]
            arm_input = -1
            for k in range(input_start[t], input_start[t + 1]):
                f = input_feature[k]
                if f == arm_feature:
                    arm_input = k
                    continue
                classes = np.uint64(lut_start[k])
                for r in range(rows):
                    offset[r] += lut[classes + bins[f, r]]
            if arm_input < 0:  # the same leaf for every arm
                for r in range(rows):
                    leaf[r] = table[offset[r]]
                for a in range(arms):
                    for r in range(rows):
                        total[a, r] += leaf[r]
            else:
                for a in range(arms):
                    arm_offset = lut[lut_start[arm_input] + arm_bins[a]]
                    for r in range(rows):
                        total[a, r] += table[offset[r] + arm_offset]


# A command readies the evaluator and the tables in a thread while its main thread reads the
# orders and starts to predict: whichever asks first builds, the other waits for it.
_BUILDING = threading.RLock()


def compiled() -> Callable[..., None] | None:
    """:func:`_evaluate` compiled by numba (on its first call), or None without numba."""
    with _BUILDING:
        return _compiled()


@functools.cache
def _compiled() -> Callable[..., None] | None:
    try:
        # Imported here, by the first prediction: it takes 0.2 s, which a command that does
        # not predict (train) then never pays.
        numba: Any = importlib.import_module("numba")
    except ImportError:  # pragma: no cover - numba is a dependency; without it LightGBM predicts
        return None
    # cache=True: compiling takes about 2 s (benchmarks/results/commands.md), as long as
    # scoring a million orders, and every `uplift predict` is a new process; loading the
    # cache takes 0.3 s. numba keeps the machine code in __pycache__ beside this file (in the
    # user's cache folder when that is read-only), keyed on this file's timestamp and the CPU:
    # never in a model folder. nogil=True, and our own threads rather than numba's
    # parallel=True: the same speed, but a parallel function took twice as long to compile.
    try:
        return numba.njit(nogil=True, cache=True)(_evaluate)
    except RuntimeError:  # no cache folder is writable: compile in every process instead
        return numba.njit(nogil=True)(_evaluate)


def prepare(boosters: Sequence[Booster] = ()) -> None:
    """Do ahead what the first prediction with ``boosters`` does whatever the orders: build
    their tables (kept as :func:`forest_of` keeps them) and load the compiled evaluator from
    numba's cache. A command can so do it in a thread while it reads the orders."""
    kernel = compiled()
    if kernel is None:
        return
    if boosters:
        forest_of(tuple(boosters))
    # No rows: numba loads the evaluator for the argument types of Forest.evaluate, runs none.
    ints, empty = np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int64)
    kernel(
        np.empty((0, 0)),
        empty,
        np.empty(0),
        ints,
        empty,
        -1,
        ints,
        empty,
        ints,
        empty,
        empty,
        np.empty(0, dtype=np.uint32),
        np.empty(0, dtype=np.uint64),
        np.empty(0),
        np.empty(0),
        False,
        np.empty((0, 0)),
    )


def is_booster(obj: object) -> bool:
    """Whether ``obj`` is a LightGBM model: a loaded model's text form, or a LightGBM booster
    (then LightGBM is imported: nothing made one otherwise)."""
    lightgbm = sys.modules.get("lightgbm")
    return isinstance(obj, TextBooster) or (
        lightgbm is not None and isinstance(obj, lightgbm.Booster)
    )


@dataclass(frozen=True, eq=False)
class Forest:
    """The trees of one or more boosters as lookup tables (see :func:`_evaluate`)."""

    kind: IntArray
    thresholds: FloatArray
    threshold_start: IntArray
    levels: IntArray
    tree_model: IntArray
    input_start: IntArray
    input_feature: IntArray
    lut_start: IntArray
    lut: NDArray[np.uint32]
    table_start: NDArray[np.uint64]
    table: FloatArray
    sigmoid: FloatArray

    @classmethod
    def of(cls, boosters: Sequence[Booster]) -> Forest | None:
        """The boosters' tables, or None when one uses what the tables do not mirror."""
        dumps = [b.dump_model() for b in boosters]
        sigmoid = [_sigmoid(d) for d in dumps]
        if any(s is None for s in sigmoid) or not all(d.get("tree_info") for d in dumps):
            return None
        try:
            trees = [
                (m, tree["tree_structure"], _splits(tree["tree_structure"]))
                for m, dump in enumerate(dumps)
                for tree in dump["tree_info"]
            ]
            features = _Features.of([node for _, _, nodes in trees for node in nodes])
        except (KeyError, TypeError, ValueError):
            return None
        n_features = max((d["max_feature_idx"] + 1 for d in dumps), default=0)
        arrays = _Tables(features)
        for model, root, nodes in trees:
            if not arrays.add(model, root, nodes):
                return None
        return cls(
            **features.arrays(n_features),
            **arrays.arrays(),
            sigmoid=np.asarray(sigmoid, dtype=np.float64),
        )

    def evaluate(
        self,
        columns: Sequence[FloatArray],
        threads: int,
        arm_feature: int = -1,
        arms: int = 1,
        mean: bool = False,
    ) -> FloatArray:
        """(rows, boosters x arms) predictions on the inputs ``columns`` (one array each), or
        with ``mean`` their mean over boosters (rows, arms): a bagged S-learner's output without
        its bags' (five times larger) array.

        Inputs past ``columns`` (the arm) are NaN; the arm takes each of its ``arms`` values.
        """
        kernel = compiled()
        if kernel is None:
            raise RuntimeError("numba is not installed")
        level = self.levels[arm_feature] if arm_feature >= 0 else 0
        arm_bins = np.minimum(np.arange(arms), level).astype(np.int64)
        n_rows = len(columns[0])
        boosters = len(self.sigmoid)
        out = np.zeros((n_rows, arms)) if mean else np.empty((n_rows, boosters * arms))

        def run(start: int) -> None:
            stop = min(start + CHUNK, n_rows)
            chunk = np.full((len(self.kind), stop - start), np.nan)
            for f, column in enumerate(columns):
                chunk[f] = column[start:stop]
            kernel(
                chunk,
                self.kind,
                self.thresholds,
                self.threshold_start,
                self.levels,
                arm_feature,
                arm_bins,
                self.tree_model,
                self.input_start,
                self.input_feature,
                self.lut_start,
                self.lut,
                self.table_start,
                self.table,
                self.sigmoid,
                mean,
                out[start:stop],
            )

        starts = range(0, n_rows, CHUNK)
        if threads <= 1 or len(starts) == 1:
            for start in starts:
                run(start)
        else:
            with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
                for _ in pool.map(run, starts):
                    pass
        if mean:
            out /= boosters  # the bags added in order, then divided: as SLearner always did
        return out


def _sigmoid(dump: dict[str, Any]) -> float | None:
    """The sigmoid scale of a binary booster, 0 for identity (regression), None otherwise."""
    if dump.get("num_tree_per_iteration") != 1 or dump.get("average_output"):
        return None
    name, *options = str(dump.get("objective", "")).split()
    if name == "regression" and not options:
        return 0.0
    if name == "binary" and len(options) == 1 and options[0].startswith("sigmoid:"):
        scale = float(options[0].removeprefix("sigmoid:"))
        return scale if scale > 0 else None
    return None


def _splits(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The split nodes of a tree, root first; ValueError on anything but plain leaves."""
    if "split_feature" not in node:
        if not set(node) <= _LEAF_KEYS:  # e.g. a linear tree's coefficients
            raise ValueError("a leaf holds more than a value")
        return []
    if node["decision_type"] not in ("<=", "=="):
        raise ValueError(f"unknown decision type {node['decision_type']}")
    return [node, *_splits(node["left_child"]), *_splits(node["right_child"])]


def _categories(node: dict[str, Any]) -> list[int]:
    return [int(c) for c in str(node["threshold"]).split("||")]


@dataclass(frozen=True)
class _Features:
    """How the kernel bins each input: by the forest's thresholds, or by category."""

    thresholds: dict[int, FloatArray]
    levels: dict[int, int]

    @classmethod
    def of(cls, nodes: list[dict[str, Any]]) -> _Features:
        thresholds: dict[int, list[float]] = {}
        levels: dict[int, int] = {}
        for node in nodes:
            f = int(node["split_feature"])
            if node["decision_type"] == "==":
                levels[f] = max(levels.get(f, 0), 1 + max(_categories(node)))
            else:
                thresholds.setdefault(f, []).append(float(node["threshold"]))
        if set(thresholds) & set(levels):
            raise ValueError("a feature has both numerical and categorical splits")
        return cls({f: np.unique(t) for f, t in thresholds.items()}, levels)

    def bins(self, feature: int) -> int:
        """An input's bins: its categories and the rest, or the gaps around its thresholds,
        NaN and zero."""
        if feature in self.levels:
            return self.levels[feature] + 1
        return len(self.thresholds[feature]) + 3

    def goes_left(self, node: dict[str, Any]) -> NDArray[np.bool_]:
        """Per bin of the node's feature: whether LightGBM sends such a value left."""
        f = int(node["split_feature"])
        left = np.zeros(self.bins(f), dtype=bool)
        if f in self.levels:
            left[_categories(node)] = True
            return left
        threshold, grid = float(node["threshold"]), self.thresholds[f]
        left[: int(np.searchsorted(grid, threshold)) + 1] = True  # x <= threshold
        default, missing = bool(node["default_left"]), node["missing_type"]
        zero = default if missing == "Zero" else threshold >= 0.0  # 0 <= threshold
        left[len(grid) + 1] = default if missing == "NaN" else zero  # NaN, else read as 0
        left[len(grid) + 2] = zero
        return left

    def arrays(self, n_features: int) -> dict[str, NDArray[Any]]:
        kind = np.zeros(n_features, dtype=np.int64)
        kind[list(self.thresholds)] = NUMERIC
        kind[list(self.levels)] = CATEGORICAL
        levels = np.zeros(n_features, dtype=np.int64)
        levels[list(self.levels)] = list(self.levels.values())
        grids = [self.thresholds.get(f, np.empty(0)) for f in range(n_features)]
        start = np.concatenate([[0], np.cumsum([len(g) for g in grids])]).astype(np.int64)
        thresholds = np.concatenate([np.empty(0), *grids])
        return {"kind": kind, "thresholds": thresholds, "threshold_start": start, "levels": levels}


class _Tables:
    """Accumulates one lookup table per tree (see :func:`_evaluate`)."""

    def __init__(self, features: _Features) -> None:
        self.features = features
        self.tree_model: list[int] = []
        self.input_start = [0]
        self.input_feature: list[int] = []
        self.lut_start: list[int] = []
        self.luts: list[NDArray[np.int64]] = []
        self.table_start: list[int] = []
        self.tables: list[FloatArray] = []
        self.size = self.lut_size = 0

    def add(self, model: int, root: dict[str, Any], nodes: list[dict[str, Any]]) -> bool:
        """Add a tree; False when its table would be too large."""
        inputs = sorted({int(n["split_feature"]) for n in nodes})
        # The classes of an input: its bins grouped by where each of the tree's splits on it
        # sends them. side[id(node)] says, per class of the node's input, whether it goes left.
        shape, lut, side = [], [], {}
        for f in inputs:
            on_f = [n for n in nodes if int(n["split_feature"]) == f]
            decisions = np.column_stack([self.features.goes_left(n) for n in on_f])
            packed = np.packbits(decisions, axis=1)  # a row's bytes say where its bin goes
            keys = packed.view(f"V{packed.shape[1]}").ravel()
            _, first, of_bin = np.unique(keys, return_index=True, return_inverse=True)
            classes = decisions[first]
            shape.append(len(classes))
            lut.append(of_bin.ravel())
            side.update({id(n): classes[:, j] for j, n in enumerate(on_f)})
        if int(np.prod(shape)) > MAX_TABLE:
            return False
        table = np.empty(shape)
        axis = {f: a for a, f in enumerate(inputs)}

        def fill(node: dict[str, Any], region: list[IntArray]) -> None:
            if "split_feature" not in node:
                table[np.ix_(*region)] = float(node["leaf_value"])
                return
            a, left = axis[int(node["split_feature"])], side[id(node)]
            fill(node["left_child"], [*region[:a], region[a][left[region[a]]], *region[a + 1 :]])
            fill(node["right_child"], [*region[:a], region[a][~left[region[a]]], *region[a + 1 :]])

        fill(root, [np.arange(k) for k in shape])
        strides = np.asarray(table.strides, dtype=np.int64) // table.itemsize
        for f, of_bin, stride in zip(inputs, lut, strides, strict=True):
            self.input_feature.append(f)
            self.lut_start.append(self.lut_size)
            self.luts.append(of_bin * stride)
            self.lut_size += len(of_bin)
        self.tree_model.append(model)
        self.input_start.append(len(self.input_feature))
        self.table_start.append(self.size)
        self.tables.append(table.ravel())
        self.size += table.size
        return True

    def arrays(self) -> dict[str, NDArray[Any]]:
        def ints(values: Sequence[int]) -> IntArray:
            return np.asarray(values, dtype=np.int64)

        return {
            "tree_model": ints(self.tree_model),
            "input_start": ints(self.input_start),
            "input_feature": ints(self.input_feature),
            "lut_start": ints(self.lut_start),
            "lut": np.concatenate([np.empty(0, np.int64), *self.luts]).astype(np.uint32),
            "table_start": np.asarray(self.table_start, dtype=np.uint64),
            "table": np.concatenate([np.empty(0), *self.tables]),
        }


def feature_columns(
    X: pd.DataFrame, pandas_categorical: list[list[Any]] | None
) -> list[FloatArray]:
    """The columns of ``X`` as LightGBM reads a frame, one float64 array each.

    Numbers stay numbers; categorical columns become the codes of the booster's levels, -1 as
    NaN. ValueError when the frame's categorical columns do not match the booster's.
    """
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    levels = list(pandas_categorical or [])
    if len(categorical) != len(levels):
        raise ValueError("the frame's categorical columns differ from the booster's")
    known = dict(zip(categorical, levels, strict=True))
    columns = []
    for name in X.columns:
        column = X[name]
        if name in known:
            if list(column.cat.categories) != list(known[name]):
                column = column.cat.set_categories(known[name])
            codes = column.cat.codes.to_numpy()
            columns.append(np.where(codes < 0, np.nan, codes))
        else:
            columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return columns


def forest_of(boosters: tuple[Booster, ...]) -> Forest | None:
    """:meth:`Forest.of`, kept for the boosters' lifetime in the cache: reading the trees back
    from LightGBM takes longer (0.17 s for five bags) than scoring one order, so a service that
    scores one order per call must not pay it each time. Fitted boosters are never changed."""
    with _BUILDING:
        return _forest_of(boosters)


@functools.lru_cache(maxsize=8)
def _forest_of(boosters: tuple[Booster, ...]) -> Forest | None:
    return Forest.of(boosters)


def boosters_forest(boosters: Sequence[Booster], n_inputs: int) -> Forest | None:
    """The tables :func:`predict_boosters` evaluates for ``boosters`` on ``n_inputs`` columns
    (read with ``boosters[0].pandas_categorical``), or None when LightGBM predicts instead."""
    if not boosters or compiled() is None:
        return None
    levels = [b.pandas_categorical for b in boosters]
    same_inputs = all(b.num_feature() == n_inputs for b in boosters) and all(
        level == levels[0] for level in levels
    )
    return forest_of(tuple(boosters)) if same_inputs else None


def arms_forest(boosters: Sequence[Booster], n_inputs: int, arms: int) -> Forest | None:
    """The tables :func:`predict_arms` evaluates for S-learner ``boosters`` on ``n_inputs``
    columns and the arm (read with ``boosters[0].pandas_categorical[:-1]``), or None when
    LightGBM predicts instead."""
    if not boosters or compiled() is None:
        return None
    levels = [list(b.pandas_categorical or []) for b in boosters]
    fits = all(
        b.num_feature() == n_inputs + 1 and level == levels[0]
        for b, level in zip(boosters, levels, strict=True)
    ) and levels[0][-1:] == [list(range(arms))]
    forest = forest_of(tuple(boosters)) if fits else None
    return forest if forest is not None and forest.kind[n_inputs] != NUMERIC else None


def predict_boosters(boosters: Sequence[Booster], X: pd.DataFrame, threads: int) -> FloatArray:
    """Each booster's prediction on ``X`` (rows x boosters), equal to ``booster.predict(X)``."""
    if len(X) == 0 or not boosters:
        return np.empty((len(X), len(boosters)))
    forest = boosters_forest(boosters, X.shape[1])
    if forest is not None:
        try:
            columns = feature_columns(X, boosters[0].pandas_categorical)
        except ValueError:
            pass  # LightGBM says what is wrong
        else:
            return forest.evaluate(columns, threads)
    return np.column_stack([_lightgbm(b, X, threads) for b in boosters])


def predict_arms(
    boosters: Sequence[Booster], X: pd.DataFrame, arm_feature: str, arms: int, threads: int
) -> FloatArray:
    """The mean of S-learner boosters' predictions for every arm (rows x arms).

    ``[:, a]`` equals the mean over ``b`` of ``boosters[b].predict(X.assign(**{arm_feature: arm
    a}))``, added in the boosters' order: the arm is a categorical input after ``X``'s columns,
    with categories 0, 1, ..., arms - 1.
    """
    if len(X) == 0 or not boosters:
        return np.empty((len(X), arms))
    forest = arms_forest(boosters, X.shape[1], arms)
    if forest is not None:
        try:
            columns = feature_columns(X, list(boosters[0].pandas_categorical or [])[:-1])
        except ValueError:
            pass
        else:
            return forest.evaluate(columns, threads, arm_feature=X.shape[1], arms=arms, mean=True)
    categories = pd.Index(range(arms))
    frames = [
        X.assign(
            **{arm_feature: pd.Categorical.from_codes(np.full(len(X), a), categories=categories)}
        )
        for a in range(arms)
    ]
    total = np.zeros((len(X), arms))
    for booster in boosters:
        total += np.column_stack([_lightgbm(booster, frame, threads) for frame in frames])
    return total / len(boosters)


def _lightgbm(booster: Booster, X: pd.DataFrame, threads: int) -> FloatArray:
    return np.asarray(booster.predict(X, num_threads=threads), dtype=np.float64)
