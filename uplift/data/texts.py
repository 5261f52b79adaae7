"""Per-order texts that take only a few distinct values, built once per value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["text_per_pair"]


def text_per_pair(
    first: ArrayLike, second: ArrayLike, text: Callable[[Any, Any], str]
) -> pd.Categorical:
    """``text(a, b)`` for the pair (a, b) of every row, as a categorical.

    A million orders fall into a few dozen (rule, arm) pairs: each text is written once and
    the orders share it, instead of a million concatenated strings.
    """
    first_codes, first_values = pd.factorize(np.asarray(first, dtype=object), use_na_sentinel=False)
    second_codes, second_values = pd.factorize(
        np.asarray(second, dtype=object), use_na_sentinel=False
    )
    width = max(len(second_values), 1)
    pairs, rows = np.unique(
        first_codes.astype(np.int64) * width + second_codes, return_inverse=True
    )
    texts = [text(first_values[p // width], second_values[p % width]) for p in pairs]
    categories, index = np.unique(np.asarray(texts, dtype=str), return_inverse=True)
    return pd.Categorical.from_codes(index[rows], categories=pd.Index(categories))
