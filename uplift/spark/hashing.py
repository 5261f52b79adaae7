"""The hash draw of ``uplift assign`` as a Spark column: the same order, the same number.

``hash_unit(order_id, salt)`` is the first 52 bits of ``md5(salt + ":" + order_id)`` as a
fraction of 2**52, exactly as :func:`uplift.experiment.assignment.hash_unit` computes it (an
integer id is hashed as its decimal text, a text id as its UTF-8 bytes), so an order gets the
same draw on Spark, in pandas, in DuckDB and in ``uplift serve``. The salt is bound as a literal
value, never spliced into SQL text.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["hash_unit"]

# 13 hex digits = 52 bits: the fraction is exact in a float64, as in uplift.experiment.assignment.
_HASH_HEX_DIGITS = 13


def hash_unit(order_ids: Column, salt: str) -> Column:
    """A uniform number in [0, 1) per order: the first 52 bits of md5(salt:order_id)."""
    text = F.concat(F.lit(f"{salt}:"), order_ids.cast("string"))
    digits = F.substring(F.md5(text), 1, _HASH_HEX_DIGITS)
    return F.conv(digits, 16, 10).cast("long").cast("double") / float(16**_HASH_HEX_DIGITS)
