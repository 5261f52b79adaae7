"""The sample-ratio check: are the arms' sizes those the design allocated?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from uplift.exceptions import SchemaError

__all__ = ["SampleRatioCheck", "check_sample_ratio"]

#: The platforms' convention: a sample-ratio mismatch this unlikely means a broken test.
SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square test of the orders per arm against the designed allocation.

    ``counts`` has ``arm``, ``observed``, ``expected``, ``observed_share``, ``expected_share``.
    The test is broken (``passed`` is False) when ``p_value < threshold``.
    """

    counts: pd.DataFrame
    statistic: float
    p_value: float
    threshold: float
    allocation_source: str

    @property
    def passed(self) -> bool:
        """Whether the arms' sizes are consistent with the allocation."""
        return bool(self.p_value >= self.threshold)


def check_sample_ratio(
    observed: Mapping[str, int] | pd.Series,
    allocation: Mapping[str, float],
    *,
    threshold: float = SRM_THRESHOLD,
    allocation_source: str = "design",
) -> SampleRatioCheck:
    """Compare orders per arm with ``allocation`` (shares summing to 1) by scipy's chi-square."""
    from scipy.stats import chisquare  # noqa: PLC0415 - scipy takes ~1 s; module light without it

    counts = pd.Series(observed, dtype=float)
    undesigned = sorted(set(counts.index) - set(allocation))
    if undesigned:
        raise SchemaError(
            f"arm(s) {', '.join(map(str, undesigned))} are in the log but not in the allocation "
            f"({', '.join(allocation)}); check the design or the arm labels"
        )
    arms = list(allocation)
    shares = np.array([allocation[a] for a in arms], dtype=float)
    shares = shares / shares.sum()
    obs = counts.reindex(arms, fill_value=0.0).to_numpy()
    expected = shares * obs.sum()
    statistic, p_value = chisquare(obs, expected)
    table = pd.DataFrame(
        {
            "arm": arms,
            "observed": obs.astype(np.int64),
            "expected": expected,
            "observed_share": obs / obs.sum(),
            "expected_share": shares,
        }
    )
    return SampleRatioCheck(table, float(statistic), float(p_value), threshold, allocation_source)
