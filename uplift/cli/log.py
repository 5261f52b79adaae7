"""`uplift validate`: read a log, check it, and print what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uplift.cli.app import app
from uplift.log import CONTROL, DEFAULT_TABLE, ColumnMap, read_log

MapOption = Annotated[
    list[str] | None,
    typer.Option("--map", help="canonical=source: read column SOURCE as CANONICAL (repeatable)."),
]
IgnoreOption = Annotated[
    list[str] | None,
    typer.Option("--ignore", help="A column that is neither canonical nor a feature (repeatable)."),
]
ControlOption = Annotated[str, typer.Option("--control", help="Name of the control arm.")]
TableOption = Annotated[str, typer.Option("--table", help="Table to read from a .duckdb file.")]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write the figures, unrounded, to this file.")
]


@app.command(help="Read and validate an experiment log, and print what it holds.")
def validate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = CONTROL,
    table: TableOption = DEFAULT_TABLE,
    json_path: JsonOption = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from uplift.files import write_json

    log = read_log(
        log_path,
        column_map=ColumnMap.parse(column_map or [], ignore or []),
        control=control,
        table=table,
    )
    summary = log.summary()
    view = Table(title=f"{log.source}: {len(log):,} orders, {len(log.arms)} arms")
    for column in summary.columns:
        view.add_column(column, justify="left" if column == "arm" else "right")
    for row in summary.itertuples(index=False):
        view.add_row(
            *(
                f"{v:,.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                for v in row
            )
        )
    console = Console()
    console.print(view)
    console.print(f"features ({len(log.features)}): {', '.join(log.features)}")
    for note in log.notes:
        console.print(f"note: {note}")
    if json_path is not None:
        write_json(
            {
                "source": log.source,
                "orders": len(log),
                "control": log.control,
                "features": list(log.features),
                "notes": list(log.notes),
                "arms": summary,
            },
            json_path,
        )
