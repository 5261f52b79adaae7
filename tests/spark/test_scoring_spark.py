"""Scoring on Spark gives the effects of `uplift predict`, to 1e-9, for every order.

The model reaches the executors as the bytes of its saved folder, checked and loaded once per
Python worker; these tests compare both engines through the command line and the Python API,
and check that the executor side refuses bytes that are not the ones the driver checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from tests.conftest import run_cli
from uplift.exceptions import ModelLoadError
from uplift.models.risk import RISK_COLUMNS
from uplift.models.uplift_model import UpliftModel, predict_table
from uplift.spark.io import effects_control
from uplift.spark.scoring import score_orders, ship_model, shipped_model
from uplift.spark.session import quiet_conversions

# Both engines run the same numpy code on the same float64 inputs: the bar is 1e-9.
TOLERANCE = 1e-9


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("order_id").reset_index(drop=True)


def _assert_same_effects(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    got, expected = _by_id(got), _by_id(expected)
    assert got["order_id"].tolist() == expected["order_id"].tolist()
    numbers = [c for c in expected.columns if c not in ("order_id", "cause")]
    np.testing.assert_allclose(
        got[numbers].to_numpy(np.float64),
        expected[numbers].to_numpy(np.float64),
        rtol=0,
        atol=TOLERANCE,
        equal_nan=True,  # cause_share is NaN where no cause pushes the risk up
    )
    if "cause" in expected.columns:
        assert got["cause"].astype(str).tolist() == expected["cause"].astype(str).tolist()


def test_predict_on_spark_equals_the_pandas_engine(
    spark: SparkSession, orders_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    pandas_out, spark_out = tmp_path / "effects.parquet", tmp_path / "effects-spark"
    done = run_cli("predict", orders_path, "--model-dir", model_dir, "--out", pandas_out)
    assert done.exit_code == 0, done.output
    done = run_cli(
        "predict", orders_path, "--model-dir", model_dir, "--out", spark_out,
        "--engine", "spark", "--spark-master", "local[2]", "--json", tmp_path / "e.json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "wrote 3,000 orders x 5 arms" in done.stdout
    expected = pd.read_parquet(pandas_out)
    got = pq.read_table(spark_out).to_pandas()
    assert set(RISK_COLUMNS) <= set(expected.columns)  # the risk columns are compared too
    _assert_same_effects(got, expected)
    # The directory records its control arm, as the pandas file does in its metadata.
    with quiet_conversions():
        assert effects_control(spark.read.parquet(str(spark_out))) == "control"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary directory left


def test_score_orders_is_the_same_in_any_partitioning(
    spark: SparkSession, orders: pd.DataFrame, model_dir: Path, model: UpliftModel
) -> None:
    expected = predict_table(model, orders, source="orders").to_frame().reset_index(drop=True)
    risk = model.predict_risk(orders).reset_index(drop=True)[list(RISK_COLUMNS)]
    expected = pd.concat([expected, risk], axis=1)
    with quiet_conversions():
        frame = spark.createDataFrame(orders.drop(columns=["assigned_at"])).repartition(3)
        _, scored = score_orders(frame, model_dir)
        got = scored.toPandas()
    _assert_same_effects(got, expected)


def test_the_executor_loads_only_the_bytes_the_driver_checked(model_dir: Path) -> None:
    model, shipped = ship_model(model_dir)
    name = next(n for n in shipped.files if n.endswith(".lgbm.txt"))
    changed = {**shipped.files, name: shipped.files[name] + b"\n"}
    tampered = dataclasses.replace(shipped, files=changed)
    with pytest.raises(ModelLoadError, match="changed since it was recorded"):
        shipped_model(tampered)
    forged = dataclasses.replace(shipped, files=changed, digest="f" * 64)
    with pytest.raises(ModelLoadError, match="differs from the recorded"):
        shipped_model(forged)
    loaded = shipped_model(shipped)
    assert loaded.treatment_arms == model.treatment_arms
    # Loaded once per worker: later tasks get the verified model, whatever bytes they carry.
    assert shipped_model(shipped) is loaded
    assert shipped_model(tampered) is loaded
