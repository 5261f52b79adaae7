"""The readout on Spark: the same sums in Spark SQL give the same figures as the DuckDB path.

One local Spark session for the module (its JVM takes ~15 s to start). Spark's sums are plain
(not compensated) and split over partitions, so figures agree to rounding: 1e-9 relative (or
absolute near 0), as in tests/experiment/test_readout_sums.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import SchemaError
from uplift.experiment.readout import readout
from uplift.spark.readout import readout_spark
from uplift.spark.session import quiet_conversions

TOLERANCE = 1e-9
FIGURES = ["difference", "std_error", "ci_lower", "ci_upper", "p_value", "p_value_adjusted"]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    # Another module's session is reused and left running; only one started here is stopped.
    existing = SparkSession.getActiveSession()
    session = existing or (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    if existing is None:
        session.stop()


def to_spark(spark: SparkSession, frame: pd.DataFrame) -> Any:
    plain = frame.copy()
    for name in plain.columns:
        if plain[name].dtype == "str":
            plain[name] = plain[name].astype(object)
    plain["delivered"] = plain["delivered"].astype("float64")
    with quiet_conversions():
        return spark.createDataFrame(plain)


def close(new: Any, old: Any) -> None:
    a, b = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE * 1e-3)


@pytest.mark.parametrize("logged", [False, True])
def test_spark_readout_equals_the_pandas_path(spark: SparkSession, logged: bool) -> None:
    frame = simulate(4_000, weeks=1, seed=12, logged_policy=logged).log
    log = ExperimentLog.from_frame(frame)
    df = to_spark(spark, frame)
    for options in ({}, {"adjust": True}, {"segment": "payment_status"}):
        new = readout_spark(df, **options)  # type: ignore[arg-type]
        old = readout(log, **options)  # type: ignore[arg-type]
        assert list(new.arms["arm"]) == list(old.arms["arm"])
        close(new.arms["retained_rate"], old.arms["retained_rate"])
        for figure in FIGURES:
            close(new.effects[figure], old.effects[figure])
        if old.segments is not None:
            assert new.segments is not None
            for figure in FIGURES:
                close(new.segments[figure], old.segments[figure])
        assert new.covariates == old.covariates


def test_spark_refuses_bad_values_in_one_line(spark: SparkSession) -> None:
    frame = simulate(2_000, weeks=1, seed=13).log
    frame.loc[[2, 5], "propensity"] = 0.0
    with pytest.raises(SchemaError, match=r"column propensity must lie in .* in 2 row\(s\)"):
        readout_spark(to_spark(spark, frame))
