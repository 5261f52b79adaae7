"""Per-order texts that take only a few distinct values, built once per value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = ["text_per_pair"]


def text_per_pair(
    first: ArrayLike, second: ArrayLike, text: Callable[[Any, Any], str]
) -> pd.Categorical:
    """``text(a, b)`` for the pair (a, b) of every row, as a categorical.

    A million orders fall into a few dozen (rule, arm) pairs: each text is written once and
    the orders share it, instead of a million concatenated strings.
    """
    first_codes, first_values = _codes(first)
    second_codes, second_values = _codes(second)
    width = max(len(second_values), 1)
    # Hashing the pair codes, not sorting them: a million rows, a few dozen pairs.
    rows, pairs = pd.factorize(first_codes * width + second_codes)
    texts = [text(first_values[p // width], second_values[p % width]) for p in pairs]
    categories, index = np.unique(np.asarray(texts, dtype=str), return_inverse=True)
    return pd.Categorical.from_codes(index[rows], categories=pd.Index(categories))


def _codes(values: ArrayLike) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """Each row's position in the distinct values (missing is a value of its own)."""
    if isinstance(values, pd.Series | pd.Categorical | pd.Index) and isinstance(
        values.dtype, pd.CategoricalDtype
    ):
        # A categorical already holds the codes: no million strings to hash.
        cat = pd.Categorical(values)
        labels = np.append(np.asarray(cat.categories, dtype=object), np.nan)
        codes = np.asarray(cat.codes, dtype=np.int64)
        return np.where(codes < 0, len(labels) - 1, codes), labels
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)
