"""Known directions: signals that a team knows push the chance an order is kept one way.

A shop often knows which way a signal goes: a longer dispatch delay never makes an order likelier
to be kept, a higher stock confidence never less. Stated as directions (``uplift train
--direction dispatch_delay_days=down``, or ``directions`` in the project's ``[log]``), they make
every outcome model of our learners monotone in that signal under every arm, all else equal:
the tree models (LightGBM's monotone constraints) of ``s_lgbm``, ``t_lgbm``, ``dr_lgbm`` and of
the risk model, whose outcome (cancelling) goes the other way, and the linear learner's slopes
(bounded to the sign under control and under every arm); ``s_blend`` holds both its members. A
small log then cannot learn a slope against what the team knows. The uplift stays free: an arm
may help most where the signal is high. The directions bind the fits; the blend's stretch of
its trees' uplift (from 20,000 orders, :mod:`uplift.models.blend`) comes after them, so there
an arm's outcome in the blend follows a direction as far as the stretched uplift lets it.

Not constrained: the DR-learner's effect models (they model uplift, not the outcome), the
outcome model that scores candidates in selection (a referee that takes no side), and
causalml's and econml's learners (refused by name when named with directions).
``benchmarks/results/directions.md`` measures what the simulator's own directions add.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from uplift.exceptions import ConfigError

__all__ = ["DIRECTIONS", "check_directions", "direction_words", "monotone_constraints"]

#: The words of a direction and their sign on the chance an order is kept.
DIRECTIONS: dict[str, int] = {"up": 1, "down": -1}


def check_directions(
    directions: Mapping[str, str] | None, frame: pd.DataFrame, inputs: Sequence[str], source: str
) -> dict[str, int]:
    """``column = up | down`` settings as signs; a ConfigError unless each names a numeric input
    of the model (a category has no order to be monotone in)."""
    signs: dict[str, int] = {}
    for column, word in (directions or {}).items():
        where = f"direction {column}={word}"
        if word not in DIRECTIONS:
            raise ConfigError(f"{where}: a direction is up or down")
        if column not in inputs:
            raise ConfigError(
                f"{where}: {source} has no model input {column!r}; inputs: {', '.join(inputs)}"
            )
        if not pd.api.types.is_numeric_dtype(frame[column]) or frame[column].dtype == bool:
            raise ConfigError(
                f"{where}: column {column!r} of {source} is not a number (a category has no "
                "order to follow)"
            )
        signs[column] = DIRECTIONS[word]
    return signs


def direction_words(signs: Mapping[str, int]) -> dict[str, str]:
    """Signs back to the words of the model card."""
    return {column: "up" if sign > 0 else "down" for column, sign in signs.items()}


def monotone_constraints(columns: Sequence[str], signs: Mapping[str, int]) -> list[int]:
    """LightGBM's ``monotone_constraints`` for a booster on ``columns``: each column's sign in
    ``signs``, 0 (free) for the others."""
    unknown = sorted(set(signs) - set(columns))
    if unknown:
        raise ConfigError(f"directions name columns the model does not have: {', '.join(unknown)}")
    return [int(signs.get(column, 0)) for column in columns]
