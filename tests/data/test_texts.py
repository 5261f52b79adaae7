"""Texts built once per distinct pair."""

from __future__ import annotations

import numpy as np
import pandas as pd

from uplift.data.texts import text_per_pair


def test_each_row_gets_the_text_of_its_pair() -> None:
    first = np.array(["a", "b", "a", None, "a"], dtype=object)
    second = pd.Series([1, 1, 2, 1, 1])
    calls: list[tuple[object, object]] = []

    def text(x: object, y: object) -> str:
        calls.append((x, y))
        return f"{'missing' if pd.isna(x) else x}-{y}"

    result = text_per_pair(first, second, text)
    assert list(result) == ["a-1", "b-1", "a-2", "missing-1", "a-1"]
    assert len(calls) == 4  # four distinct pairs, each written once


def test_pairs_with_the_same_text_share_one_category() -> None:
    result = text_per_pair(["x", "y"], ["p", "q"], lambda _a, _b: "same")
    assert list(result.categories) == ["same"]
    assert list(result) == ["same", "same"]


def test_categorical_inputs_give_the_texts_of_their_values() -> None:
    """Categoricals are read by their codes; the texts equal those of the plain values."""
    rng = np.random.default_rng(3)
    first = rng.choice(np.array(["r1", "r2", None], dtype=object), size=500)
    second = rng.choice(np.array(["p", "q", "s"], dtype=object), size=500)

    def text(x: object, y: object) -> str:
        return f"{'missing' if pd.isna(x) else x}/{y}"

    plain = text_per_pair(first, second, text)
    # Unused categories and a missing value must not shift any row's text.
    as_categories = pd.Series(pd.Categorical(first, categories=["r0", "r2", "r1"]))
    coded = text_per_pair(as_categories, pd.Categorical(second), text)
    assert list(coded) == list(plain)
    assert "missing/p" in set(coded)
