"""LightGBM text models read without LightGBM (uplift.models.lgbm_text), held to LightGBM's own
``dump_model`` value for value, and to its predictions through our tree evaluator."""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from uplift.models import lgbm_text
from uplift.models.lgbm_text import TextBooster, parse_model
from uplift.models.trees import Forest, boosters_forest, predict_boosters

TOLERANCE = 1e-12  # as in test_trees: LightGBM's order of sums, another libm's exp() at most
N_ROWS = 2000
BIG_LEVELS = [f"c{i:02d}" for i in range(40)]  # more than 32: bitsets of two words
# Top-level keys parse_model mirrors (not feature_infos and feature_importances).
HEADER_KEYS = [
    "name",
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "average_output",
    "feature_names",
    "monotone_constraints",
    "pandas_categorical",
]
SPLIT_KEYS = {
    "split_index",
    "split_feature",
    "split_gain",
    "threshold",
    "decision_type",
    "default_left",
    "missing_type",
    "internal_value",
    "internal_weight",
    "internal_count",
    "left_child",
    "right_child",
}
LEAF_KEYS = {"leaf_index", "leaf_value", "leaf_weight", "leaf_count"}
TREE_KEYS = {"tree_index", "num_leaves", "num_cat", "shrinkage", "tree_structure"}
INT_KEYS = {
    "tree_index",
    "num_leaves",
    "num_cat",
    "split_index",
    "split_feature",
    "internal_count",
    "leaf_index",
    "leaf_count",
}


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Numbers with NaN and with many zeros, a small and a big categorical, both with NaN."""
    rng = np.random.default_rng(seed)
    with_nan = rng.normal(size=n)
    with_nan[rng.random(n) < 0.15] = np.nan
    small = pd.Categorical(rng.choice(list("abcd"), n), categories=list("abcd"))
    big = pd.Categorical(rng.choice(BIG_LEVELS, n), categories=BIG_LEVELS)
    return pd.DataFrame(
        {
            "with nan": with_nan,  # LightGBM writes the space as '_'
            "zeros": np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n)),
            "small": pd.Series(small).mask(rng.random(n) < 0.1),
            "big": pd.Series(big).mask(rng.random(n) < 0.05),
        }
    )


def _score(X: pd.DataFrame) -> np.ndarray:
    big = X["big"].cat.codes.to_numpy()
    return (
        np.nan_to_num(X["with nan"].to_numpy(), nan=1.5)
        - 1.5 * (X["zeros"].to_numpy() == 0)
        + 1.2 * X["small"].isin(["b", "c"]).to_numpy()
        + 2.0 * np.isin(big, [2, 9, 17, 33, 35, 38])  # categories in both words of a bitset
    )


# Few levels per category, one-vs-many and many-vs-many splits on the categoricals.
CATEGORICAL = {"max_cat_to_onehot": 1, "min_data_per_group": 5, "cat_smooth": 1, "cat_l2": 1}
BASE = {"num_leaves": 7, "min_data_in_leaf": 20, "num_threads": 1, "verbose": -1, "seed": 1}


def _categorical_case(objective: str, **params: Any) -> tuple[lgb.Booster, pd.DataFrame]:
    X = _frame(N_ROWS, 0)
    rng = np.random.default_rng(1)
    score = _score(X)
    if objective == "binary":
        y = (rng.random(N_ROWS) < 1 / (1 + np.exp(-score))).astype(float)
    else:
        y = score + rng.normal(size=N_ROWS)
    booster = lgb.train(
        {**BASE, **CATEGORICAL, "objective": objective, **params}, lgb.Dataset(X, y), 5
    )
    return booster, X


def _numeric_case(params: dict[str, Any], y: Callable[[np.ndarray], np.ndarray]) -> lgb.Booster:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(N_ROWS, 3))
    return lgb.train({**BASE, **params}, lgb.Dataset(X, y(X)), 4)


@functools.cache
def _case(name: str) -> tuple[lgb.Booster, pd.DataFrame | None]:
    """Small real boosters, each fitted once, with the frame of the categorical ones."""
    if name == "binary":  # NaN in training (missing NaN) and none (missing None)
        return _categorical_case("binary")
    if name == "regression_zero_as_missing":
        return _categorical_case("regression", zero_as_missing=True)
    if name == "regression_no_missing":
        return _categorical_case("regression", use_missing=False)
    if name == "one_leaf":  # a constant label: no tree ever splits
        return _numeric_case({"objective": "regression"}, lambda X: np.full(len(X), 3.0)), None
    if name == "random_forest":  # average_output
        rf = {"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}
        rf["monotone_constraints"] = [1, 0, -1]  # a header line of its own
        return _numeric_case({"objective": "binary", **rf}, lambda X: (X[:, 0] > 0) * 1.0), None
    if name == "multiclass":  # three trees per iteration; names LightGBM rewrites
        rng = np.random.default_rng(3)
        X = pd.DataFrame(rng.normal(size=(N_ROWS, 3)), columns=["prix €", "a=b", "two  spaces"])
        y = np.digitize(X["prix €"] + rng.normal(size=N_ROWS) / 2, [-0.5, 0.5])
        params = {**BASE, "objective": "multiclass", "num_class": 3}
        return lgb.train(params, lgb.Dataset(X, y), 3), None
    raise AssertionError(name)


CASES = [
    "binary",
    "regression_zero_as_missing",
    "regression_no_missing",
    "one_leaf",
    "random_forest",
    "multiclass",
]
CATEGORICAL_CASES = CASES[:3]


def _nodes(dump: dict[str, Any]) -> list[dict[str, Any]]:
    found, stack = [], [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        found.append(node)
        if "split_index" in node:
            stack += [node["left_child"], node["right_child"]]
    return found


def _assert_same_value(key: str, ours: Any, theirs: Any) -> None:
    assert ours == theirs, (key, ours, theirs)
    if key in INT_KEYS:
        assert type(ours) is int, key
    elif isinstance(theirs, bool | str):
        assert type(ours) is type(theirs), key
    else:  # a double, which LightGBM's JSON may write as "3" (read back as an int)
        assert type(ours) is float, key


def _assert_same_trees(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """The trees hold the same keys with equal values (doubles compared exactly)."""
    assert len(ours) == len(theirs)
    for mine, real in zip(ours, theirs, strict=True):
        assert set(mine) == set(real) == TREE_KEYS
        for key in TREE_KEYS - {"tree_structure"}:
            _assert_same_value(key, mine[key], real[key])
        stack = [(mine["tree_structure"], real["tree_structure"])]
        while stack:
            a, b = stack.pop()
            assert set(a) == set(b)
            assert set(a) in (SPLIT_KEYS, LEAF_KEYS, {"leaf_value", "leaf_count"})
            for key in set(a) - {"left_child", "right_child"}:
                _assert_same_value(key, a[key], b[key])
            if "left_child" in a:
                stack += [(a["left_child"], b["left_child"]), (a["right_child"], b["right_child"])]


def _assert_same_dump(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key in HEADER_KEYS:
        assert ours[key] == theirs[key], key
    _assert_same_trees(ours["tree_info"], theirs["tree_info"])


# --------------------------------------------------------------------------------------------
# parse_model against LightGBM's dump_model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_parse_model_equals_lightgbm_dump(name: str) -> None:
    booster, _ = _case(name)
    ours = parse_model(booster.model_to_string())
    _assert_same_dump(ours, booster.dump_model())
    assert set(ours) == {*HEADER_KEYS, "tree_info"}


def test_cases_cover_every_kind_of_split() -> None:
    """The cases hold what the comparisons are meant to cover."""
    kinds = {
        name: {
            (n.get("decision_type"), n.get("missing_type"))
            for n in _nodes(_case(name)[0].dump_model())
        }
        for name in CASES
    }
    assert {("<=", "NaN"), ("<=", "None"), ("==", "NaN")} <= kinds["binary"]
    assert ("<=", "Zero") in kinds["regression_zero_as_missing"]
    assert {m for d, m in kinds["regression_no_missing"] if d == "<="} == {"None"}
    assert kinds["one_leaf"] == {(None, None)}  # leaves only
    binary = _case("binary")[0].dump_model()
    categories = [
        int(c)
        for n in _nodes(binary)
        if n.get("decision_type") == "=="
        for c in n["threshold"].split("||")
    ]
    assert max(categories) >= 32  # a split on the big categorical's second word
    assert binary["pandas_categorical"][1] == BIG_LEVELS
    forest = _case("random_forest")[0].dump_model()
    assert forest["average_output"] is True
    assert forest["monotone_constraints"] == [1, 0, -1]
    assert _case("multiclass")[0].dump_model()["num_tree_per_iteration"] == 3


def test_one_leaf_tree_is_dumped_as_lightgbm_dumps_it() -> None:
    booster, _ = _case("one_leaf")
    trees = parse_model(booster.model_to_string())["tree_info"]
    assert [t["num_leaves"] for t in trees] == [1] * len(trees)
    assert trees[0]["tree_structure"] == {"leaf_value": 3.0, "leaf_count": N_ROWS}


def test_lightgbm_rewrites_spaces_in_feature_names() -> None:
    booster, _ = _case("multiclass")
    names = ["prix_€", "a=b", "two__spaces"]
    assert TextBooster(booster.model_to_string()).feature_name() == names
    assert booster.feature_name() == names


@pytest.mark.parametrize(
    "token",
    [
        "0.1",
        "1e-05",
        "-5.75082e-05",
        "1.09238e+07",
        "0.12345678901234567",
        "-8.15317e-13",
        "3.5e-320",
    ],
)
def test_lightgbm_parser_is_repeated_exactly(token: str) -> None:
    """A tree's internal values are read by LightGBM's own parser, not a correctly rounded
    one: it reads -8.15317e-13 as -8.153169999999999e-13, and 3.5e-320 as 0. The dump shows
    its double."""
    text = _case("binary")[0].model_to_string()
    changed = _edit(
        text, "internal_value", lambda line: f"internal_value={token} " + line.split(" ", 1)[1]
    )
    real = lgb.Booster(model_str=changed).dump_model()["tree_info"][0]["tree_structure"]
    ours = parse_model(changed)["tree_info"][0]["tree_structure"]
    assert ours["internal_value"] == real["internal_value"]
    assert ours == real  # nothing else moved


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_iteration": 1},
        {"start_iteration": 1, "num_iteration": 1},
        {"start_iteration": 2},
        {"start_iteration": 9},
        {"num_iteration": -1, "start_iteration": -3},
    ],
)
def test_dump_model_takes_iterations_as_lightgbm(kwargs: dict[str, Any]) -> None:
    booster, _ = _case("multiclass")
    ours = TextBooster(booster.model_to_string()).dump_model(**kwargs)
    _assert_same_dump(ours, booster.dump_model(**kwargs))


# --------------------------------------------------------------------------------------------
# TextBooster: what prediction asks of a booster
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_text_booster_answers_as_lightgbm(name: str) -> None:
    booster, _ = _case(name)
    text = booster.model_to_string()
    model = TextBooster(text)
    assert model.model_to_string() == text
    assert model.num_feature() == booster.num_feature()
    assert model.feature_name() == booster.feature_name()
    assert model.pandas_categorical == booster.pandas_categorical
    assert model.pandas_categorical == lgb.Booster(model_str=text).pandas_categorical
    _assert_same_dump(model.dump_model(), booster.dump_model())
    assert "booster" not in vars(model)  # LightGBM was never needed


def test_pandas_categorical_is_none_without_pandas() -> None:
    booster, _ = _case("random_forest")
    assert TextBooster(booster.model_to_string()).pandas_categorical is None
    assert parse_model(booster.model_to_string())["pandas_categorical"] is None


@pytest.mark.parametrize("name", CASES)
def test_forest_of_text_booster_equals_forest_of_booster(name: str) -> None:
    booster, _ = _case(name)
    ours = Forest.of([TextBooster(booster.model_to_string())])
    theirs = Forest.of([booster])
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    for field in fields(Forest):
        assert np.array_equal(getattr(ours, field.name), getattr(theirs, field.name)), field.name


@pytest.mark.parametrize("name", CATEGORICAL_CASES)
def test_predict_boosters_with_text_booster_equals_lightgbm(name: str) -> None:
    booster, X = _case(name)
    assert X is not None
    rows = pd.concat([X, _frame(500, 7)], ignore_index=True)  # rows fit never saw
    model = TextBooster(booster.model_to_string())
    assert boosters_forest([model], rows.shape[1]) is not None  # our evaluator, not LightGBM
    ours = predict_boosters([model], rows, 2)
    assert "booster" not in vars(model)
    expected = booster.predict(rows)
    np.testing.assert_allclose(ours[:, 0], expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(model.predict(rows), expected, rtol=0, atol=0)  # delegated


# --------------------------------------------------------------------------------------------
# Linear trees: not mirrored, LightGBM dumps them
# --------------------------------------------------------------------------------------------


def test_linear_trees_fall_back_to_lightgbm() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 2))
    y = X[:, 0] * 2 + rng.normal(size=500)
    params = {**BASE, "objective": "regression", "linear_tree": True}
    booster = lgb.train(params, lgb.Dataset(X, y), 2)
    text = booster.model_to_string()
    with pytest.raises(ValueError, match="linear"):
        parse_model(text)
    model = TextBooster(text)
    assert model.num_feature() == 2
    assert model.dump_model() == booster.dump_model()
    assert model.dump_model(num_iteration=1) == booster.dump_model(num_iteration=1)
    assert Forest.of([model]) is None  # the evaluator leaves linear trees to LightGBM


# --------------------------------------------------------------------------------------------
# Damaged models fail when read
# --------------------------------------------------------------------------------------------


def _split_trees(text: str) -> tuple[str, list[str], str]:
    """The header, each tree's text as tree_sizes cuts it, and what follows the trees."""
    head, _, rest = text.partition("\n\n")
    line = re.search("^tree_sizes=(.*)$", head, re.M)
    assert line is not None
    sizes = [int(size) for size in line[1].split()]
    data, starts = rest.encode(), [0, *itertools.accumulate(sizes)]
    trees = [data[a:b].decode() for a, b in itertools.pairwise(starts)]
    return head, trees, data[starts[-1] :].decode()


def _join_trees(head: str, trees: list[str], tail: str) -> str:
    """The model text of these parts, with tree_sizes telling the trees' new sizes (LightGBM
    finds its trees by them)."""
    sizes = " ".join(str(len(tree.encode())) for tree in trees)
    head = re.sub("^tree_sizes=.*$", f"tree_sizes={sizes}", head, flags=re.M)
    return head + "\n\n" + "".join(trees) + tail


def _edit(text: str, key: str, change: Callable[[str], str], tree: int = 0) -> str:
    """``text`` with the line ``key=...`` of tree ``tree`` changed ("": removed)."""
    head, trees, tail = _split_trees(text)
    lines = trees[tree].split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
    changed = change(lines[at])
    lines[at : at + 1] = [changed] if changed else []
    trees[tree] = "\n".join(lines)
    return _join_trees(head, trees, tail)


def _drop_tree(text: str, tree: int) -> str:
    head, trees, tail = _split_trees(text)
    del trees[tree]
    return _join_trees(head, trees, tail)


def _values(key: str, change: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
    """Damage: tree 0's ``key`` values changed."""
    return lambda text: _edit(
        text, key, lambda line: f"{key}=" + " ".join(change(line.split("=")[1].split(" ")))
    )


def _first(value: str) -> Callable[[list[str]], list[str]]:
    return lambda values: [value, *values[1:]]


def _tree_arrays(text: str, *keys: str) -> list[list[int]]:
    block = text[text.index("Tree=0\n") : text.index("Tree=1\n")]
    lines = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return [[int(v) for v in lines[key].split()] for key in keys]


def _loop(text: str) -> str:
    """Damage: two splits of tree 0 made each other's child, cut off from the root (every node
    keeps one parent)."""
    left, right = _tree_arrays(text, "left_child", "right_child")
    a = next(c for c in (left[0], right[0]) if c > 0)
    b = next(c for c in (left[a], right[a]) if c > 0)
    (left if left[0] == a else right)[0] = left[b]  # the root's slot that held a
    left[b] = a
    text = _values("left_child", lambda _: [str(c) for c in left])(text)
    return _values("right_child", lambda _: [str(c) for c in right])(text)


def _categorical_split(text: str, value: str) -> str:
    """Damage: tree 0's first categorical split points to categorical split ``value``."""
    (decisions,) = _tree_arrays(text, "decision_type")
    at = next(i for i, d in enumerate(decisions) if d & 1)

    def change(values: list[str]) -> list[str]:
        return [value if i == at else v for i, v in enumerate(values)]

    return _values("threshold", change)(text)


DAMAGES: dict[str, tuple[Callable[[str], str], str]] = {
    "cut short": (lambda text: text[: len(text) // 2], "cut short"),
    "cut in the header": (lambda text: text[:60], "not a LightGBM"),
    "empty": (lambda text: "", "not a LightGBM"),
    "garbage": (lambda text: "hello\nworld\n\n", "not a LightGBM"),
    "no tree line": (lambda text: text.removeprefix("tree\n"), "not a LightGBM"),
    "no end of trees": (lambda text: text.replace("end of trees", "end of tree"), "cut short"),
    "a tree size wrong": (
        lambda text: re.sub(
            "^tree_sizes=(\\d+)", lambda m: f"tree_sizes={int(m[1]) + 1}", text, flags=re.M
        ),
        "tree_sizes",
    ),
    "no tree sizes": (lambda text: text.replace("\ntree_sizes=", "\ntree_size="), "no tree_sizes"),
    "a tree missing": (lambda text: _drop_tree(text, 1), "tree 1 does not start"),
    "a line not key=value": (
        lambda text: _edit(text, "leaf_count", lambda line: line + "\ngarbage"),
        "not key=value",
    ),
    "no threshold": (lambda text: _edit(text, "threshold", lambda line: ""), "no threshold"),
    "leaf values short": (_values("leaf_value", lambda v: v[:-1]), "leaf_value has"),
    "thresholds long": (_values("threshold", lambda v: [*v, "0.5"]), "threshold has"),
    "a bad number": (_values("leaf_value", _first("abc")), "could not convert"),
    "a bad gain": (_values("split_gain", _first("1.2.3")), "not a number"),
    "a bad integer": (_values("leaf_count", _first("1.5")), "not an integer"),
    "a child out of range": (_values("left_child", _first("99")), "child index 99"),
    "the root as a child": (_values("left_child", _first("0")), "child index 0"),
    "a child used twice": (
        lambda text: _values("right_child", _first(str(_tree_arrays(text, "left_child")[0][0])))(
            text
        ),
        "used twice",
    ),
    "a loop of splits": (_loop, "do not form one tree"),
    "a feature out of range": (_values("split_feature", _first("9")), "split_feature beyond"),
    "a category index out of range": (
        lambda text: _categorical_split(text, "7"),
        "categorical split 7",
    ),
    "cat_threshold short": (_values("cat_threshold", lambda v: v[:-1]), "cat_threshold has"),
    "cat_threshold not a word": (_values("cat_threshold", _first(str(1 << 32))), "32-bit word"),
    "too few feature names": (
        lambda text: text.replace("feature_names=with_nan ", "feature_names="),
        "feature names",
    ),
    "bad pandas_categorical": (lambda text: text.rstrip() + "]\n", "Extra data"),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_damaged_model_fails_when_read(damage: str) -> None:
    text = _case("binary")[0].model_to_string()
    change, message = DAMAGES[damage]
    damaged = change(text)
    assert damaged != text
    with pytest.raises(ValueError, match=message):
        TextBooster(damaged)


def test_edit_keeps_a_model_lightgbm_reads() -> None:
    """The damages above fail for what they change, not for a tree out of place."""
    text = _case("binary")[0].model_to_string()
    assert _edit(text, "shrinkage", lambda line: line) == text
    changed = _edit(text, "leaf_count", lambda line: line + "0", tree=1)  # ten times the last
    _assert_same_dump(parse_model(changed), lgb.Booster(model_str=changed).dump_model())


# --------------------------------------------------------------------------------------------
# No LightGBM import
# --------------------------------------------------------------------------------------------


def test_reading_a_model_does_not_import_lightgbm(tmp_path: Path) -> None:
    """In a fresh interpreter: the module file alone (the package ``uplift.models`` may import
    LightGBM itself), a model read and dumped, and only then is LightGBM imported, by
    ``TextBooster.booster``: proof the check sees an import when there is one."""
    model = tmp_path / "model.txt"
    model.write_text(_case("binary")[0].model_to_string())
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lgbm_text", {lgbm_text.__file__!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
booster = module.TextBooster(open({str(model)!r}).read())
booster.dump_model(), booster.num_feature(), booster.feature_name()
assert "lightgbm" not in sys.modules, "reading a model imported lightgbm"
booster.booster
assert "lightgbm" in sys.modules, "the check cannot see an import"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
