"""One local Spark session for every test of tests/spark, and the small world they share.

A JVM takes ~15 s to start on these cores, so the session is started once per test run
(``local[2]``, no UI; :func:`uplift.spark.spark_session` reuses it for the command line run in
this process) and stopped at the end. The orders and the model are small: a t_lgbm model with
its risk model, fitted in well under a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from uplift.data.log import ExperimentLog
from uplift.data.simulate import ARM_COSTS, pending_orders, simulate
from uplift.models import load_model, save_model, train_uplift
from uplift.models.uplift_model import UpliftModel
from uplift.spark.session import spark_session

COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != "control"}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = spark_session(
        "local[2]",
        app_name="uplift-tests",
        # Two cores, small data: few partitions keep every job short.
        config={"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved t_lgbm model (with its risk model) of a small randomised log."""
    log = ExperimentLog.from_frame(simulate(6000, 2, seed=1).log)
    folder = tmp_path_factory.mktemp("model") / "model"
    save_model(train_uplift(log, learner="t_lgbm", validate=False, costs=COSTS), folder)
    return folder


@pytest.fixture(scope="session")
def model(model_dir: Path) -> UpliftModel:
    return load_model(model_dir)


@pytest.fixture(scope="session")
def orders() -> pd.DataFrame:
    """3,000 pending orders of another week, ids sorted (the order ties are broken in)."""
    return pending_orders(simulate(3000, 1, seed=7, first_order_id=100_000).log)


@pytest.fixture(scope="session")
def orders_path(orders: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orders") / "orders.parquet"
    orders.to_parquet(path, index=False)
    return path
