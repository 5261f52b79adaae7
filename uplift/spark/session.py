"""The Spark session the engine runs on, and the one clear error when Spark cannot run here.

:func:`spark_session` starts (or reuses) a session with settings that suit this package: no web
UI or console progress bar, Arrow for every pandas conversion (the scoring and allocation move
columns between the JVM and pandas in Arrow batches), batches large enough that the tree
evaluator's per-call cost vanishes, and time stamps read as UTC (weeks are UTC weeks, as in
the pandas engine). On a local master the executors' Python is this interpreter, so they see
the same installed package.

Spark needs the ``pyspark`` package and a Java runtime (17 or later). When either is missing,
:func:`require_spark` raises a :class:`~uplift.exceptions.ConfigError` that says so in one line
(the command line prints it and exits with code 2).

pyspark 4 warns on each pandas conversion that it "does not yet fully support pandas >= 3",
and its ``toPandas`` passes a ``copy`` keyword pandas 3 deprecates: :func:`quiet_conversions`
silences exactly those two warnings around our conversions, which the tests check on pandas 3.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from uplift.exceptions import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["INSTALL_HINT", "quiet_conversions", "require_spark", "spark_session"]

INSTALL_HINT = "pip install 'uplift[spark]'"
#: Orders per Arrow batch handed to a Python worker: the tree evaluator has a fixed cost per
#: call, which 50,000 orders amortise (Spark's default is 10,000), at ~20 MB of inputs.
BATCH_ORDERS = 50_000
# Spark's own log lines below ERROR (its hostname and native-library notices) are noise to a
# user of the command line; this file sets the level for the driver started here.
_LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


def require_spark() -> None:
    """Raise a one-line :class:`ConfigError` unless pyspark imports and Java can be found."""
    try:
        import pyspark  # noqa: F401, PLC0415 - the optional extra: only checked when asked for
    except ImportError:
        raise ConfigError(
            f"--engine spark needs pyspark, which is not installed: {INSTALL_HINT} "
            "(Spark also needs Java 17 or later)"
        ) from None
    if _java() is None:
        raise ConfigError(
            "--engine spark needs Java 17 or later, and no java was found (set JAVA_HOME or put "
            "java on PATH; e.g. apt-get install openjdk-17-jre-headless)"
        )


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _local_memory_gib() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1
    return int(min(8, max(1, total // 4 // 2**30)))


def is_local(master: str) -> bool:
    """Whether ``master`` runs the executors in this machine's processes (``local[...]``)."""
    return master == "local" or master.startswith("local[")


def spark_session(
    master: str = "local[*]",
    *,
    app_name: str = "uplift",
    config: Mapping[str, str] | None = None,
) -> SparkSession:
    """The active Spark session, or a new one on ``master`` with this package's settings.

    ``config`` adds or overrides Spark settings (e.g. ``{"spark.driver.memory": "8g"}``).
    A session that is already running is returned as it is (Spark has one per process), so a
    notebook's own session keeps its settings.
    """
    require_spark()
    from pyspark.sql import SparkSession  # noqa: PLC0415 - pyspark is checked just above

    with quiet_conversions():
        # pyspark.testing.utils checks the pandas version once, when first imported (pyspark
        # itself imports it lazily); under warnings-as-errors that check would fail and mark
        # pandas as missing for the whole process. Imported here, quietly, it records pandas.
        importlib.import_module("pyspark.testing.utils")

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(BATCH_ORDERS),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_LOG_CONFIG.as_uri()}",
    }
    if is_local(master):
        # One machine: a few shuffle partitions per core, not Spark's 200 for a cluster.
        settings["spark.sql.shuffle.partitions"] = str(max(4, 2 * (os.cpu_count() or 1)))
        # Executors' Python must be this interpreter, or they lack this package and pyarrow.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # The driver is the executor too: it caches the orders' net values and collects the
        # orders near the prices. Spark's 1g default is for a cluster's driver; a quarter of
        # the machine (1 to 8 GiB), which the JVM takes only as it needs it.
        settings["spark.driver.memory"] = f"{_local_memory_gib()}g"
    settings.update(config or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as error:  # the JVM did not start: wrong Java, no memory, bad master
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ConfigError(
            f"Spark did not start on {master!r}: {first} (Spark needs Java 17 or later)"
        ) from None


@contextmanager
def quiet_conversions() -> Iterator[None]:
    """Silence pyspark's two known pandas-3 warnings around a conversion (see the module)."""
    import pandas.errors  # noqa: PLC0415 - pandas is imported by every caller already

    with warnings.catch_warnings():
        # pyspark 4.x warns before every pandas conversion that pandas 3 is not yet supported;
        # the conversions this package makes are tested on pandas 3 (tests/spark).
        warnings.filterwarnings(
            "ignore",
            message="PySpark does not yet fully support pandas",
            category=FutureWarning,
        )
        # pyspark's toPandas calls astype(..., copy=False), a keyword pandas 3 deprecates.
        warnings.filterwarnings(
            "ignore",
            message="The copy keyword is deprecated",
            category=pandas.errors.Pandas4Warning,
        )
        yield
