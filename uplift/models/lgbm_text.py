"""A LightGBM model read from its own text format, without importing LightGBM.

``import lightgbm`` takes about a second (it imports scikit-learn and scipy.stats), and a
command that only predicts needs none of it: our tree evaluator (:mod:`uplift.models.trees`)
reads a booster's trees from ``dump_model()``. Models are saved as LightGBM's text models
(``Booster.model_to_string()``), so :func:`parse_model` reads that text into exactly the dict
``lightgbm.Booster(model_str=text).dump_model()`` returns, and :class:`TextBooster` answers
what prediction asks of a booster (``dump_model``, ``num_feature``, ``feature_name``,
``pandas_categorical``) from it. Anything else (``predict``, SHAP values) loads LightGBM
itself, once, on first use.

Mirrored, number for number (tests compare with ``==`` against LightGBM 4): the header keys
``name``, ``version``, ``num_class``, ``num_tree_per_iteration``, ``label_index``,
``max_feature_idx``, ``objective``, ``average_output``, ``feature_names``,
``monotone_constraints``, ``pandas_categorical``, and every tree of ``tree_info``. Not
mirrored: ``feature_infos`` and ``feature_importances`` (prediction never reads them), and
linear trees (``linear_tree=True``): :func:`parse_model` refuses them, and
:meth:`TextBooster.dump_model` asks LightGBM instead.

The text is read strictly: every key LightGBM 4 writes must be there with the right number
of values, and the child indices must form one tree. A damaged model fails when it is read,
with ValueError, rather than giving wrong predictions later.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import lightgbm

__all__ = ["TextBooster", "parse_model"]

T = TypeVar("T")

_PANDAS_KEY = "pandas_categorical:"
_MISSING_TYPES = {0: "None", 1: "Zero"}  # 2 is NaN, and so is 3 for LightGBM's dump
_CATEGORICAL, _DEFAULT_LEFT = 1, 2  # bits of decision_type; bits 2-3 are the missing type
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?)([0-9]*))?")


def parse_model(text: str) -> dict[str, Any]:
    """``lightgbm.Booster(model_str=text).dump_model()``, read from ``text`` (see the module's
    docstring for the keys). ValueError when the text is damaged or has linear trees."""
    dump, linear = _parse(text)
    if linear:
        raise ValueError("the model has linear trees, which are not mirrored")
    return dump


class TextBooster:
    """A LightGBM model held as its text, answering what prediction needs without LightGBM.

    The text is parsed when the booster is made, so a damaged model fails there (ValueError).
    :attr:`booster`, the real ``lightgbm.Booster``, is made on first use: by :meth:`predict`,
    or by :meth:`dump_model` for linear trees.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        dump, linear = _parse(text)
        self._dump: dict[str, Any] | None = None if linear else dump
        self._feature_names: list[str] = dump["feature_names"]
        self._max_feature_idx: int = dump["max_feature_idx"]
        self.pandas_categorical: list[list[Any]] | None = _pandas_categorical(text)

    @functools.cached_property
    def booster(self) -> lightgbm.Booster:
        """The model as a ``lightgbm.Booster``."""
        import lightgbm  # noqa: PLC0415 - takes a second; only LightGBM's own predict needs it

        return lightgbm.Booster(model_str=self._text)

    def model_to_string(self) -> str:
        return self._text

    def num_feature(self) -> int:
        return self._max_feature_idx + 1

    def feature_name(self) -> list[str]:
        return list(self._feature_names)

    def dump_model(
        self, num_iteration: int | None = None, start_iteration: int = 0
    ) -> dict[str, Any]:
        """``Booster.dump_model``: the iterations from ``start_iteration``, ``num_iteration``
        of them (None or <= 0: all). The dict's values (the trees, the names) are this
        booster's own, shared between calls: do not change them."""
        if self._dump is None:
            dump: dict[str, Any] = self.booster.dump_model(
                num_iteration=num_iteration, start_iteration=start_iteration
            )
            return dump
        trees = self._dump["tree_info"]
        per_iteration = max(self._dump["num_tree_per_iteration"], 1)
        start = min(max(start_iteration, 0), len(trees) // per_iteration) * per_iteration
        stop = len(trees)
        if num_iteration is not None and num_iteration > 0:
            stop = min(start + num_iteration * per_iteration, stop)
        return {**self._dump, "tree_info": trees[start:stop]}

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """``lightgbm.Booster.predict`` (loads LightGBM)."""
        return self.booster.predict(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# The text: a header of key=value lines, then one section per tree
# --------------------------------------------------------------------------------------------


def _parse(text: str) -> tuple[dict[str, Any], bool]:
    """The dump of ``text``, and whether it has linear trees (their splits are read too, so
    that a damaged linear model fails as well)."""
    header, sections = _sections(text)
    dump = _header(header)
    trees, linear = [], False
    for index, section in enumerate(sections):
        try:
            tree, is_linear = _tree(section, index, dump["max_feature_idx"])
        except ValueError as error:
            raise ValueError(f"tree {index}: {error}") from None
        trees.append(tree)
        linear = linear or is_linear
    dump["tree_info"] = trees
    dump["pandas_categorical"] = _pandas_categorical(text)
    return dump, linear


def _sections(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The header's and each tree's ``key=value`` lines, as dicts.

    The header ends at the first blank line. The trees follow, cut out by the byte sizes the
    header's ``tree_sizes`` gives, as LightGBM cuts them, up to ``end of trees``. LightGBM
    checks none of it and reads a misplaced tree as garbage (or aborts the process), so a
    tree must start where its size says and the sizes must add up to where the trees end.
    """
    data = text.encode()
    header_end, trees_end = data.find(b"\n\n"), data.find(b"\nend of trees\n")
    if not data.startswith(b"tree\n") or header_end < 0:
        raise ValueError("not a LightGBM tree model: no 'tree' line and header")
    if trees_end < header_end:
        raise ValueError("no 'end of trees' line: the model is cut short")
    header = _key_values(data[:header_end].decode().split("\n")[1:])
    sizes = [_int(size) for size in _field(header, "tree_sizes").split()]
    if sum(sizes) != trees_end + 1 - (header_end + 2):
        raise ValueError("tree_sizes do not add up to the trees")
    trees, start = [], header_end + 2
    for index, size in enumerate(sizes):
        lines = data[start : start + size].decode().split("\n")
        if lines[0] != f"Tree={index}":
            raise ValueError(f"tree {index} does not start where tree_sizes says")
        if any("=" not in line for line in lines[1:] if line):
            raise ValueError(f"tree {index}: a line is not key=value")
        trees.append(_key_values([line for line in lines[1:] if line]))
        start += size
    return header, trees


def _key_values(lines: list[str]) -> dict[str, str]:
    # A bare line (average_output) is a key without a value; a value may hold '=' (a feature
    # name).
    return {key: value for key, _, value in (line.partition("=") for line in lines)}


def _header(header: dict[str, str]) -> dict[str, Any]:
    num_class = _int(_field(header, "num_class"))
    max_feature_idx = _int(_field(header, "max_feature_idx"))
    # LightGBM splits on single spaces (it writes spaces in names as '_').
    names = [name for name in _field(header, "feature_names").split(" ") if name]
    if len(names) != max_feature_idx + 1:
        raise ValueError(f"{len(names)} feature names for {max_feature_idx + 1} features")
    dump: dict[str, Any] = {
        "name": "tree",
        "version": _field(header, "version"),
        "num_class": num_class,
        "num_tree_per_iteration": _int(header.get("num_tree_per_iteration", str(num_class))),
        "label_index": _int(_field(header, "label_index")),
        "max_feature_idx": max_feature_idx,
    }
    if "objective" in header:  # no objective line: a custom objective, none in the dump
        dump["objective"] = header["objective"]
    dump["average_output"] = "average_output" in header
    dump["feature_names"] = names
    dump["monotone_constraints"] = [_int(c) for c in header.get("monotone_constraints", "").split()]
    return dump


def _pandas_categorical(text: str) -> list[list[Any]] | None:
    """The JSON after ``pandas_categorical:``, found as LightGBM's Python package finds it:
    on the last line that starts at least that key's length before the end."""
    start = text.rfind("\n", 0, len(text) - len(_PANDAS_KEY))
    last = text[start:].strip()
    if not last.startswith(_PANDAS_KEY):
        return None
    levels: list[list[Any]] | None = json.loads(last.removeprefix(_PANDAS_KEY))
    return levels


# --------------------------------------------------------------------------------------------
# A tree: parallel arrays over its splits (num_leaves - 1) and its leaves
# --------------------------------------------------------------------------------------------


def _tree(section: dict[str, str], index: int, max_feature_idx: int) -> tuple[dict[str, Any], bool]:
    """A ``tree_info`` entry of the dump, and whether the tree is linear."""
    n = _int(_field(section, "num_leaves"))
    num_cat = _int(_field(section, "num_cat"))
    linear = _int(_field(section, "is_linear")) != 0
    if n < 1 or num_cat < 0:
        raise ValueError(f"num_leaves {n}, num_cat {num_cat}")
    counts = _array(section, "leaf_count", n, _int)
    values = _array(section, "leaf_value", n, float)
    if n == 1:  # LightGBM writes no leaf weight for a lone leaf, and dumps no index
        structure: dict[str, Any] = {"leaf_value": values[0], "leaf_count": counts[0]}
    else:
        structure = _structure(section, n, num_cat, max_feature_idx, values, counts)
    info = {
        "tree_index": index,
        "num_leaves": n,
        "num_cat": num_cat,
        "shrinkage": _atof(_field(section, "shrinkage")),  # LightGBM's own parser
        "tree_structure": structure,
    }
    return info, linear


def _structure(
    section: dict[str, str],
    n: int,
    num_cat: int,
    max_feature_idx: int,
    values: list[float],
    counts: list[int],
) -> dict[str, Any]:
    """The nested nodes of a tree of ``n`` > 1 leaves, as LightGBM dumps them."""
    features = _array(section, "split_feature", n - 1, _int)
    if any(not 0 <= f <= max_feature_idx for f in features):
        raise ValueError("split_feature beyond the model's features")
    decisions = _array(section, "decision_type", n - 1, _int)
    thresholds = _array(section, "threshold", n - 1, float)
    categories = _categories(section, num_cat) if num_cat else []
    # LightGBM reads these three with its own fast parser, not a correctly rounded one, and
    # keeps the split gain as a float32.
    gains = _split_gains(_array(section, "split_gain", n - 1, _atof))
    internal_values = _array(section, "internal_value", n - 1, _atof)
    internal_weights = _array(section, "internal_weight", n - 1, _atof)
    internal_counts = _array(section, "internal_count", n - 1, _int)
    weights = _array(section, "leaf_weight", n, float)
    splits = []
    for i, decision in enumerate(decisions):
        if decision & _CATEGORICAL:
            cat = int(thresholds[i])
            if not 0 <= cat < num_cat:
                raise ValueError(f"split {i} points to categorical split {cat} of {num_cat}")
            threshold: float | str = categories[cat]
        else:
            threshold = _avoid_inf(thresholds[i], 1e300)
        splits.append(
            {
                "split_index": i,
                "split_feature": features[i],
                "split_gain": gains[i],
                "threshold": threshold,
                "decision_type": "==" if decision & _CATEGORICAL else "<=",
                "default_left": bool(decision & _DEFAULT_LEFT),
                "missing_type": _MISSING_TYPES.get((decision >> 2) & 3, "NaN"),
                "internal_value": internal_values[i],
                "internal_weight": internal_weights[i],
                "internal_count": internal_counts[i],
            }
        )
    leaves = [
        {
            "leaf_index": j,
            "leaf_value": values[j],
            "leaf_weight": weights[j],
            "leaf_count": counts[j],
        }
        for j in range(n)
    ]
    _link(
        splits,
        leaves,
        _array(section, "left_child", n - 1, _int),
        _array(section, "right_child", n - 1, _int),
    )
    return splits[0]


def _link(
    splits: list[dict[str, Any]], leaves: list[dict[str, Any]], left: list[int], right: list[int]
) -> None:
    """Hang every node under its parent (child ``c`` < 0 is leaf ``~c``); ValueError unless
    that makes one tree with split 0 at its root."""
    parented: set[int] = set()

    def node(child: int) -> dict[str, Any]:
        if not -len(leaves) <= child < len(splits) or child == 0 or child in parented:
            raise ValueError(f"child index {child} out of range or used twice")
        parented.add(child)
        return splits[child] if child >= 0 else leaves[~child]

    for i, split in enumerate(splits):
        split["left_child"], split["right_child"] = node(left[i]), node(right[i])
    # Every node but the root now has one parent; a loop of splits would be cut off from it.
    reached, stack = 0, [splits[0]]
    while stack:
        current = stack.pop()
        reached += 1
        if "left_child" in current:
            stack += [current["left_child"], current["right_child"]]
    if reached != len(splits) + len(leaves):
        raise ValueError("the child indices do not form one tree")


def _categories(section: dict[str, str], num_cat: int) -> list[str]:
    """Each categorical split's categories as the dump writes them ("1||4||33"): the set bits
    of its 32-bit words ``cat_threshold[cat_boundaries[i]:cat_boundaries[i + 1]]``."""
    bounds = _array(section, "cat_boundaries", num_cat + 1, _int)
    if bounds[0] != 0 or any(a > b for a, b in itertools.pairwise(bounds)):
        raise ValueError("cat_boundaries do not increase from 0")
    words = _array(section, "cat_threshold", bounds[-1], _int)
    if any(not 0 <= w < 1 << 32 for w in words):
        raise ValueError("cat_threshold holds a value that is not a 32-bit word")
    return [
        "||".join(
            str(32 * k + bit)
            for k, word in enumerate(words[start:stop])
            for bit in range(32)
            if word >> bit & 1
        )
        for start, stop in itertools.pairwise(bounds)
    ]


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _field(section: dict[str, str], key: str) -> str:
    if key not in section:
        raise ValueError(f"no {key}")
    return section[key]


def _array(section: dict[str, str], key: str, count: int, parse: Callable[[str], T]) -> list[T]:
    tokens = _field(section, key).split()
    if len(tokens) != count:
        raise ValueError(f"{key} has {len(tokens)} values, not {count}")
    return [parse(token) for token in tokens]


def _int(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{token!r} is not an integer") from None


def _avoid_inf(x: float, bound: float) -> float:
    """LightGBM's ``Common::AvoidInf``: its dump writes a value beyond ``bound`` as the bound,
    and NaN as 0."""
    return 0.0 if math.isnan(x) else min(max(x, -bound), bound)


def _split_gains(values: list[float]) -> list[float]:
    """Split gains as LightGBM keeps them (float32) and dumps them (``AvoidInf`` at 1e38)."""
    # Clipped first, so that nothing overflows in the cast: it gives the same float32.
    gains = np.clip(np.asarray(values, dtype=np.float64), -1e38, 1e38).astype(np.float32)
    return [_avoid_inf(float(g), 1e38) for g in gains]


def _atof(token: str) -> float:
    """The double LightGBM's own ``Common::Atof`` reads from ``token``: digits accumulated in
    doubles, then scaled by a power of ten. It rounds more than once, so it can differ from
    ``float(token)`` in the last bit, and the dump shows LightGBM's double."""
    match = _NUMBER.fullmatch(token)
    if match is None or not (match[2] or match[3]):
        word = token.lstrip("+-").lower()
        if word in ("na", "nan", "null"):
            return math.nan
        if word in ("inf", "infinity"):
            return -1e308 if token.startswith("-") else 1e308
        raise ValueError(f"{token!r} is not a number")
    sign, whole, fraction, exponent_sign, exponent = match.groups()
    value = 0.0
    for digit in whole:
        value = value * 10.0 + int(digit)
    if fraction is not None:
        right = 0.0
        for digit in fraction:
            right = int(digit) + right * 10.0
        value += right / _pow(10.0, len(fraction))
    scale, e = 1.0, min(int(exponent or "0"), 308)
    while e >= 50:
        scale, e = scale * 1e50, e - 50
    while e >= 8:
        scale, e = scale * 1e8, e - 8
    while e > 0:
        scale, e = scale * 10.0, e - 1
    value = value / scale if exponent_sign == "-" else value * scale
    return -value if sign == "-" else value


def _pow(base: float, power: int) -> float:
    """LightGBM's ``Common::Pow``, whose rounding :func:`_atof` must repeat."""
    if power == 0:
        return 1.0
    if power % 2 == 0:
        return _pow(base * base, power // 2)
    if power % 3 == 0:
        return _pow(base * base * base, power // 3)
    return base * _pow(base, power - 1)
