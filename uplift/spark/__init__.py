"""The same scoring, allocation and readout on Apache Spark (the optional extra ``spark``).

``pip install 'uplift[spark]'`` adds pyspark; Spark also needs Java 17 or later. From a
notebook on a cluster::

    from uplift.spark import rank_orders, score_orders, spark_session

    spark = spark_session()                       # the active session, or a local one
    model, effects = score_orders(spark.read.parquet("orders/"), "model/")
    queue = rank_orders(effects, costs={"expedite": 5.0}, capacity={"expedite": 20_000})

Names are loaded on first use, so ``import uplift.spark`` works without pyspark, and
:func:`spark_session` (or :func:`uplift.spark.session.require_spark`) says in one line what is
missing. :mod:`uplift.spark.scoring` applies a saved model to every partition,
:mod:`uplift.spark.allocation` ranks the queue within capacities and budget by a distributed
dual method (:mod:`uplift.spark.prices`), :mod:`uplift.spark.sample` draws a training sample
stratified by arm and week.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uplift.spark.allocation import SparkAssignment, rank_orders
    from uplift.spark.sample import TrainingSample, sample_log
    from uplift.spark.scoring import score_orders
    from uplift.spark.session import spark_session

__all__ = [
    "SparkAssignment",
    "TrainingSample",
    "rank_orders",
    "sample_log",
    "score_orders",
    "spark_session",
]

# Public name -> the module that defines it (each imports pyspark; this package does not).
_EXPORTS = {
    "SparkAssignment": "uplift.spark.allocation",
    "rank_orders": "uplift.spark.allocation",
    "TrainingSample": "uplift.spark.sample",
    "sample_log": "uplift.spark.sample",
    "score_orders": "uplift.spark.scoring",
    "spark_session": "uplift.spark.session",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'uplift.spark' has no attribute {name!r}")
    if module != "uplift.spark.session":
        from uplift.spark.session import require_spark  # noqa: PLC0415 - the one clear error

        require_spark()
    return getattr(importlib.import_module(module), name)
