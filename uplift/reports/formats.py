"""How the report writes a number: one unit per measure, the same in tables, sentences and cards.

Shares of orders and their differences (retention, uplift, Qini, rates) are percentages; money
is whole units of the currency for totals and two decimals per order; counts are whole numbers.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard

__all__ = [
    "DASH",
    "count",
    "interval",
    "is_number",
    "money",
    "number",
    "p_value",
    "percent",
    "score",
    "span",
]

#: What a missing or undefined figure reads as.
DASH = "–"


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is a finite number (not a flag, text, None or NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def money(value: object, currency: str = "", decimals: int = 0) -> str:
    """An amount of money: "EUR 1,234" (no currency: "1,234"); decimals for per-order figures."""
    if not is_number(value):
        return DASH
    text = f"{float(value):,.{decimals}f}"
    return f"{currency} {text}" if currency else text


def percent(value: object, decimals: int = 2) -> str:
    """A share of orders or a difference of shares: 0.0123 reads "1.23%"."""
    return f"{float(value):.{decimals}%}" if is_number(value) else DASH


def count(value: object) -> str:
    """A number of orders (estimates of one are rounded to whole orders)."""
    return f"{float(value):,.0f}" if is_number(value) else DASH


def p_value(value: object) -> str:
    """A p-value: three decimals, or "<0.001" (smaller values mean nothing more to a reader)."""
    if not is_number(value):
        return DASH
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def score(value: object) -> str:
    """A standardised figure (z, a standardised difference): two decimals."""
    return f"{float(value):.2f}" if is_number(value) else DASH


def number(value: object, digits: int = 4) -> str:
    """Any other figure: ``digits`` significant digits, whole numbers from 1,000 up."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return DASH if value is None else str(value)


def interval(lower: str, upper: str) -> str:
    """An interval's text, "(0.80% to 1.60%)"; empty when either end is missing."""
    return "" if DASH in (lower, upper) else f"({lower} to {upper})"


def span(estimate: str, lower: str, upper: str) -> str:
    """An estimate with its interval: "1.20% (0.80% to 1.60%)"."""
    bounds = interval(lower, upper)
    return f"{estimate} {bounds}" if bounds and estimate != DASH else estimate
