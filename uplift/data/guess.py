"""A first project file from a log: which column is the arm, the outcome, the order id.

``uplift init`` asks nothing: it guesses from column names and contents, writes every guess
into ``uplift.toml`` with a comment, and the user corrects the file if a guess is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from uplift.data.log import CANONICAL

__all__ = ["Guess", "guess_project", "project_text"]

# Names are matched whole-word, case-insensitive, after splitting on anything not a letter.
_ARM = ("arm", "segment", "treatment", "treat", "variant", "group", "offer", "promotion", "promo")
_CONTROL = re.compile(r"^(control|ctrl|no|none|holdout|baseline|placebo|untreated|0|false)\b", re.I)
_LOST = ("cancel", "cancelled", "canceled", "churn", "churned", "lost", "returned")
_KEPT = ("retained", "kept", "visit", "visited", "conversion", "converted", "purchase")
_OUTCOME = (*_KEPT, "buy", "bought", "click", "clicked", "open", "opened", "response")
_REVENUE = ("revenue", "spend", "spent", "sales", "gmv")
_VALUE = ("value", "basket", "price", "amount", "total")
_ID = ("id", "order", "customer", "user", "client")
_TIME = ("assigned", "date", "timestamp", "time", "created")
_PROPENSITY = ("propensity", "pscore", "probability")
MAX_ARMS = 20


@dataclass
class Guess:
    """The guessed settings and the reason for each, in the order they were made."""

    column_map: dict[str, str] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)
    control: str | None = None
    #: The [outcome] words (see :class:`uplift.data.project.Words`); empty: the defaults.
    words: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def guess_project(frame: pd.DataFrame) -> Guess:
    """Guess the column map, the control arm and the outcome's words of ``frame``."""
    guess = Guess()
    free = [str(c) for c in frame.columns if str(c) not in CANONICAL]
    arm = "arm" if "arm" in frame.columns else _pick_arm(frame, free)
    if arm is not None:
        _take(guess, "arm", arm, free, "few distinct values and an arm-like name")
        guess.control = _pick_control(frame[arm])
        guess.reasons.append(f"control arm {guess.control!r}: the level that reads as no action")
    _guess_outcome(frame, free, guess)
    rules: list[tuple[str, tuple[str, ...], Callable[[str], bool], str]] = [
        ("revenue", _REVENUE, lambda c: _non_negative(frame[c]), "a number named like revenue"),
        ("order_value", _VALUE, lambda c: _non_negative(frame[c]), "a number named like a value"),
        ("order_id", _ID, lambda c: bool(frame[c].is_unique), "unique per row, named like an id"),
        ("assigned_at", _TIME, lambda c: _dates(frame[c]), "dates, named like a time"),
        ("propensity", _PROPENSITY, lambda c: _shares(frame[c]), "shares in (0, 1]"),
    ]
    for canonical, names, test, why in rules:
        if canonical not in frame.columns:
            found = _named(free, names, test)
            if found is not None:
                _take(guess, canonical, found, free, why)
    return guess


def project_text(guess: Guess, source: str) -> str:
    """``uplift.toml`` for ``guess``: the guesses as settings, their reasons as comments."""
    lines = [
        f"# Project file guessed by `uplift init` from {source}; check every line.",
        "# Reasons for the guesses:",
        *(f"#   {reason}" for reason in guess.reasons),
        "",
        "[log]",
        "map = {" + ", ".join(f"{k} = {_toml(v)}" for k, v in guess.column_map.items()) + "}",
        f"ignore = [{', '.join(_toml(c) for c in guess.ignore)}]",
        "allow = []",
    ]
    if guess.control is not None:
        lines.append(f"control = {_toml(guess.control)}")
    lines += [
        "",
        "[outcome]",
        *(f"{key} = {_toml(text)}" for key, text in guess.words.items()),
        "# order_value = 10.0   # what every order is worth, when no column holds it",
        '# currency = "EUR"',
        "",
        "[arms]",
        "costs = {}",
        "",
        "[policy]",
        "holdout = 0.1",
        "",
    ]
    return "\n".join(lines)


def _guess_outcome(frame: pd.DataFrame, free: list[str], guess: Guess) -> None:
    """The first 0/1 column named like an outcome; other outcome-like columns are ignored,
    since an outcome measured after the arm is no feature."""
    if "retained" in frame.columns or "cancelled" in frame.columns:
        return
    binary = [c for c in free if _binary(frame[c])]
    outcomes = [c for c in binary if _words(c) & {*_OUTCOME, *_LOST}]
    if not outcomes:
        return
    first = outcomes[0]
    lost = bool(_words(first) & set(_LOST))
    _take(guess, "cancelled" if lost else "retained", first, free, "0/1, named like an outcome")
    if not lost:
        guess.words = {
            "kept": first,
            "keeps": f"gets {first}",
            "lost": f"orders without {first}",
            "avoided": f"{first} gained",
            "rate": f"share without {first}",
        }
    for column in outcomes[1:]:
        free.remove(column)
        guess.ignore.append(column)
        guess.reasons.append(f"ignore {column}: another outcome, measured after the arm")


def _take(guess: Guess, canonical: str, column: str, free: list[str], why: str) -> None:
    if column != canonical:
        guess.column_map[canonical] = column
    if column in free:
        free.remove(column)
    guess.reasons.append(f"{canonical} = {column}: {why}")


def _pick_arm(frame: pd.DataFrame, free: list[str]) -> str | None:
    return _named(free, _ARM, lambda c: 2 <= frame[c].nunique() <= MAX_ARMS)


def _pick_control(arms: pd.Series) -> str:
    levels = [str(v) for v in arms.dropna().unique()]
    named = [v for v in levels if _CONTROL.match(v.strip())]
    # No level reads as no action: the most frequent one is the likeliest holdout.
    return named[0] if named else str(arms.astype(str).value_counts().index[0])


def _named(columns: list[str], names: tuple[str, ...], test: Callable[[str], bool]) -> str | None:
    """The first column that passes ``test`` and is named one of ``names`` (in their order),
    else the first that has one of them as a word of its name ("segment" before
    "history_segment")."""
    for named in (lambda c, n: c.lower() == n, lambda c, n: n in _words(c)):
        for name in names:
            for column in columns:
                if named(column, name) and test(column):
                    return column
    return None


def _words(column: str) -> set[str]:
    return {w for w in re.split(r"[^a-z]+", column.lower()) if w}


def _binary(values: pd.Series) -> bool:
    seen = set(values.dropna().astype(str).str.lower().unique())
    return 1 <= len(seen) <= 2 and seen <= {"0", "1", "0.0", "1.0", "true", "false", "yes", "no"}


def _non_negative(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and (values.dropna() >= 0).all())


def _shares(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and values.between(0, 1).all())


def _dates(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    parsed = pd.to_datetime(values.head(100).astype(str), errors="coerce", format="ISO8601")
    return bool(parsed.notna().all())


def _toml(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's."""
    return json.dumps(text)
