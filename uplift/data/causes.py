"""The causes of cancellation risk, and which order signal speaks for which cause.

A CX lead asks where an order's risk comes from before asking which action saves it. The
answer is one of five *families* of causes; every feature column belongs to one of them or to
"other". The order world's signals have a default map; a shop maps its own columns in the
project file (``[causes]``, e.g. ``payment = ["psp_status", "retries"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from uplift.exceptions import ConfigError

__all__ = ["DEFAULT_FAMILIES", "FAMILIES", "OTHER", "family_of"]

#: The families of causes, in the order reports list them.
FAMILIES = ("payment", "stock", "fulfilment", "serviceability", "confidence")
#: Where a column no family claims goes.
OTHER = "other"

#: The order world's signals (:mod:`uplift.data.simulate`). Confidence gathers what speaks of
#: the buyer's doubt: first orders, edits, support contacts, late-night and unusually large
#: orders, and the loyalty of many prior orders.
DEFAULT_FAMILIES: dict[str, str] = {
    "payment_method": "payment",
    "payment_status": "payment",
    "stock_confidence": "stock",
    "dispatch_delay_days": "fulfilment",
    "serviceability": "serviceability",
    "customer_tenure": "confidence",
    "prior_orders": "confidence",
    "order_edits": "confidence",
    "support_contacts": "confidence",
    "hour": "confidence",
    "order_value": "confidence",
}


def family_of(
    columns: Iterable[str], configured: Mapping[str, Iterable[str]] | None = None
) -> dict[str, str]:
    """The family of every column: the project's ``{family: [columns]}`` where it names the
    column, else the default map, else "other"."""
    columns = list(columns)
    chosen: dict[str, str] = {}
    for family, named in (configured or {}).items():
        if family not in FAMILIES:
            raise ConfigError(
                f"[causes] names an unknown family {family!r}; families are " + ", ".join(FAMILIES)
            )
        for column in named:
            if column in chosen and chosen[column] != family:
                raise ConfigError(
                    f"[causes] puts column {column!r} in both {chosen[column]} and {family}"
                )
            chosen[column] = family
    return {c: chosen.get(c, DEFAULT_FAMILIES.get(c, OTHER)) for c in columns}
