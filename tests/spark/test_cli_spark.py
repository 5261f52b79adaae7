"""`uplift predict` and `uplift rank` with --engine spark: the pandas engine's queue, Parquet
directories in and out, one-line errors with exit code 2, and nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from tests.conftest import run_cli
from tests.spark.conftest import COSTS
from uplift.models.uplift_model import UpliftModel, predict_table

SPARK = ("--engine", "spark", "--spark-master", "local[2]")
COST_FLAGS = [f"--cost={arm}={cost:g}" for arm, cost in COSTS.items()]


@pytest.fixture(scope="module")
def effects_file(
    orders_path: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pandas engine's effects file of the orders."""
    path = tmp_path_factory.mktemp("effects") / "effects.parquet"
    done = run_cli("predict", orders_path, "--model-dir", model_dir, "--out", path)
    assert done.exit_code == 0, done.output
    return path


@pytest.fixture(scope="module")
def capacity_flags(model: UpliftModel, orders: pd.DataFrame) -> list[str]:
    best = pd.Series(predict_table(model, orders, source="o").best_arm(COSTS)).value_counts()
    wanted = best.drop("control").iloc[:2]
    return [f"--capacity={arm}={n // 2}" for arm, n in wanted.items()]


def test_rank_on_spark_writes_the_pandas_queue(
    spark: SparkSession,
    orders_path: Path,
    effects_file: Path,
    capacity_flags: list[str],
    tmp_path: Path,
) -> None:
    """From the same effects file, every column of every order's row is the same."""
    flags = [orders_path, "--effects", effects_file, *COST_FLAGS, *capacity_flags]
    queue = tmp_path / "queue.parquet"
    done = run_cli("rank", *flags, "--out", queue, "--json", tmp_path / "p.json")
    assert done.exit_code == 0, done.output
    out = tmp_path / "queue-spark"
    done = run_cli("rank", *flags, "--out", out, "--json", tmp_path / "s.json", *SPARK)
    assert done.exit_code == 0, done.output
    assert "expected incremental net value" in done.stdout
    expected = pd.read_parquet(queue).set_index("order_id").sort_index()
    got = pq.read_table(out).to_pandas().set_index("order_id").sort_index()
    assert list(got.columns) == list(expected.columns)
    assert got.index.tolist() == expected.index.tolist()
    for name in ("arm", "policy_arm", "reason"):
        assert got[name].astype(str).tolist() == expected[name].astype(str).tolist(), name
    assert got["rank"].fillna(0).astype(int).tolist() == expected["rank"].fillna(0).tolist()
    numbers = ["net_value", "expected_retained_revenue", "cost", "propensity"]
    np.testing.assert_array_equal(got[numbers].to_numpy(), expected[numbers].to_numpy())
    pandas_json = json.loads((tmp_path / "p.json").read_text())
    spark_json = json.loads((tmp_path / "s.json").read_text())
    assert spark_json["orders"] == pandas_json["orders"] == 3000
    assert spark_json["objective"] == pytest.approx(pandas_json["objective"], rel=1e-9)
    assert [r["orders"] for r in spark_json["summary"]] == [
        r["orders"] for r in pandas_json["summary"]
    ]


def test_rank_with_a_model_gives_the_pandas_arms(
    spark: SparkSession,
    orders_path: Path,
    model_dir: Path,
    capacity_flags: list[str],
    tmp_path: Path,
) -> None:
    """Scored on Spark, costs from the model card: the same arm, value and risk per order
    (the reasons differ: pandas prefixes its policy tree's rules, see uplift.spark.allocation)."""
    flags = [orders_path, "--model-dir", model_dir, *capacity_flags, "--cost", "expedite=6"]
    done = run_cli("rank", *flags, "--out", tmp_path / "queue.parquet")
    assert done.exit_code == 0, done.output
    done = run_cli("rank", *flags, "--out", tmp_path / "queue-spark", *SPARK)
    assert done.exit_code == 0, done.output
    assert "expedite=6" in done.stdout  # the flag wins over the card's cost, as on pandas
    expected = pd.read_parquet(tmp_path / "queue.parquet").set_index("order_id").sort_index()
    got = pq.read_table(tmp_path / "queue-spark").to_pandas().set_index("order_id").sort_index()
    assert list(got.columns) == list(expected.columns)
    assert got["arm"].tolist() == expected["arm"].astype(str).tolist()
    assert got["cause"].tolist() == expected["cause"].astype(str).tolist()
    numbers = ["net_value", "cost", "propensity", "risk"]
    np.testing.assert_allclose(got[numbers], expected[numbers], rtol=0, atol=1e-9)


def test_errors_are_one_line_with_exit_code_2(
    spark: SparkSession,
    orders: pd.DataFrame,
    orders_path: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv = tmp_path / "orders.csv"
    orders.head(50).to_csv(csv, index=False)
    broken = tmp_path / "broken.parquet"
    orders.assign(order_value=orders["order_value"].where(orders.index != 7)).to_parquet(broken)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"")
    cases = [
        (["predict", csv, "--model-dir", model_dir, "--out", tmp_path / "e"], "reads Parquet"),
        (["predict", orders_path, "--model-dir", model_dir, "--out", tmp_path / "e.csv"],
         "writes a directory"),
        (["predict", orders_path, "--model-dir", model_dir, "--out", foreign], "Spark did not"),
        (["predict", broken, "--model-dir", model_dir, "--out", tmp_path / "e"],
         "order_value must be a finite number >= 0; not so for order_id 100007"),
        (["rank", orders_path, "--out", tmp_path / "q"], "exactly one of --model-dir"),
        (["rank", orders_path, "--model-dir", model_dir, "--out", tmp_path / "q",
          "--capacity", "teleport=3"], "unknown arm(s) teleport"),
    ]  # fmt: skip
    for argv, message in cases:
        done = run_cli(*argv, *SPARK)
        assert done.exit_code == 2, (argv, done.output)
        assert message in done.stderr, done.stderr
        assert done.stderr.strip().count("\n") == 0, done.stderr
    done = run_cli("predict", orders_path, "--model-dir", model_dir, "--out", tmp_path / "e",
                   "--engine", "dask")  # fmt: skip
    assert done.exit_code == 2
    assert "--engine must be one of 'pandas', 'spark'" in done.stderr
    assert not (tmp_path / "e").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    # Without Java the one line says what to install.
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    argv = ["predict", orders_path, "--model-dir", model_dir, "--out", tmp_path / "e", *SPARK]
    done = run_cli(*argv)
    assert done.exit_code == 2
    assert "needs Java 17 or later" in done.stderr


def test_a_failed_run_writes_nothing(
    spark: SparkSession,
    orders_path: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The effects directory and its --json are written together or not at all, and an
    earlier output stays as it was."""
    out = tmp_path / "effects"
    done = run_cli("predict", orders_path, "--model-dir", model_dir, "--out", out, *SPARK)
    assert done.exit_code == 0, done.output
    before = sorted(p.name for p in out.iterdir())

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "e.json"))

    monkeypatch.setattr("uplift.spark.jobs.write_outputs", fail)
    done = run_cli("predict", orders_path, "--model-dir", model_dir, "--out", out,
                   "--json", tmp_path / "e.json", *SPARK)  # fmt: skip
    assert done.exit_code == 2
    assert "No space left on device" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (tmp_path / "e.json").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
