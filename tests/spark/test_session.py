"""The session helper: this package's settings, and one clear line when Spark cannot run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from tests.conftest import run_cli
from uplift.exceptions import ConfigError
from uplift.spark.session import require_spark, spark_session


def test_the_session_has_arrow_on_and_no_ui(spark: SparkSession) -> None:
    assert spark_session() is spark  # the running session is reused, settings and all
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.uiWebUrl is None


def test_without_pyspark_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'uplift\[spark\]'"):
        require_spark()
    import uplift.spark  # noqa: PLC0415 - importing the package needs no pyspark

    with pytest.raises(ConfigError, match="needs pyspark"):
        uplift.spark.rank_orders  # noqa: B018 - the lazy export checks first
    done = run_cli("rank", tmp_path / "o.parquet", "--effects", tmp_path / "e.parquet",
                   "--out", tmp_path / "q", "--engine", "spark")  # fmt: skip
    assert done.exit_code == 2
    assert done.stderr.startswith("error: --engine spark needs pyspark")
    assert done.stderr.count("\n") == 1
