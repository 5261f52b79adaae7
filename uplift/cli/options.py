"""Options that several commands share, declared once so they read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ENGINES",
    "AllowOption",
    "CapacityOption",
    "ConfigOption",
    "ControlOption",
    "CostOption",
    "DirectionOption",
    "EngineOption",
    "IgnoreOption",
    "JournalOption",
    "JsonOption",
    "MapOption",
    "ModelDirOption",
    "OrderValueOption",
    "SparkMasterOption",
    "StoreOption",
    "TableOption",
    "TrustModelOption",
]

#: The engines of `uplift predict` and `rank`: pandas on one machine (the default),
#: or Spark for orders that do not fit one (uplift.spark; Parquet in and out).
ENGINES = ("pandas", "spark")
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="pandas (one machine) or spark: reads a Parquet file or directory and writes a "
        "Parquet directory (needs the spark extra, pyspark, and Java 17+).",
    ),
]
SparkMasterOption = Annotated[
    str,
    typer.Option(
        "--spark-master", help="Spark master URL for --engine spark (e.g. yarn, spark://h:7077)."
    ),
]
MapOption = Annotated[
    list[str] | None,
    typer.Option("--map", help="canonical=source: read column SOURCE as CANONICAL (repeatable)."),
]
IgnoreOption = Annotated[
    list[str] | None,
    typer.Option("--ignore", help="A column that is neither canonical nor a feature (repeatable)."),
]
ControlOption = Annotated[
    str | None,
    typer.Option(
        "--control", help="Name of the control arm (default: the project's, else control)."
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="Project file (default: uplift.toml in this folder, if there is one)."
    ),
]
OrderValueOption = Annotated[
    float | None,
    typer.Option("--order-value", help="What every order is worth, when no column holds it."),
]
AllowOption = Annotated[
    list[str] | None,
    typer.Option("--allow", help="A feature the leak guard must keep (repeatable)."),
]
TableOption = Annotated[str, typer.Option("--table", help="Table to read from a .duckdb file.")]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write every figure, unrounded, to this file.")
]
CostOption = Annotated[
    list[str] | None,
    typer.Option("--cost", help="arm=X: what one use of the arm costs (repeatable)."),
]
DirectionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--direction",
        help="column=up|down: the way a numeric signal moves the chance an order is kept, "
        "known beforehand; the tree models are held to it (repeatable).",
    ),
]
CapacityOption = Annotated[
    list[str] | None,
    typer.Option("--capacity", help="arm=N: at most N orders get the arm (repeatable)."),
]
ModelDirOption = Annotated[Path, typer.Option("--model-dir", help="The model directory.")]
TrustModelOption = Annotated[
    bool,
    typer.Option(
        "--trust-model",
        help="Load a pickled model folder that your key did not sign; only for folders you trust.",
    ),
]
StoreOption = Annotated[
    Path, typer.Option("--store", help="The DuckDB store file.", show_default=True)
]
JournalOption = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        help="The decision journal of `uplift serve`, JSON lines "
        "[default: serve-journal.jsonl beside the store].",
    ),
]
