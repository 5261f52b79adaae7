"""The README's PySpark example (section "On Spark") runs, here on the local session."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from uplift.data.simulate import simulate

README = Path(__file__).resolve().parents[2] / "README.md"


def spark_example() -> str:
    text = README.read_text()
    start = text.index("\n## On Spark\n")
    section = text[start : text.index("\n## ", start + 5)]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section 'On Spark' has one PySpark example"
    return blocks[0]


def test_the_spark_example_runs(
    spark: SparkSession,
    orders: pd.DataFrame,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    orders.to_parquet("orders.parquet", index=False)
    simulate(20_000, weeks=2, seed=3).log.to_parquet("log.parquet", index=False)
    shutil.copytree(model_dir, "model")
    code = spark_example()
    # Spark resolves a relative path against its JVM's folder, not this test's: make the
    # example's Parquet paths absolute (on a cluster they name the lake's folders anyway).
    for name in ("orders.parquet", "queue.parquet", "log.parquet"):
        assert f'"{name}"' in code
        code = code.replace(f'"{name}"', repr(str(tmp_path / name)))
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    queue = pq.read_table("queue.parquet").to_pandas()
    assert len(queue) == len(orders)
    assert queue["holdout"].mean() == pytest.approx(0.1, abs=0.03)
    assert (queue["arm"] == "agent_call").sum() <= 300
    sample = namespace["sample"]
    assert isinstance(sample, pd.DataFrame)
    # The default sample holds 1,000,000 orders: this 20,000-order log is kept whole.
    assert sorted(sample["order_id"]) == sorted(pd.read_parquet("log.parquet")["order_id"])
