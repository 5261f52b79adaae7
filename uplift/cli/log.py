"""`uplift validate`: read a log, check it, and print what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uplift.cli.app import app
from uplift.cli.options import ControlOption, IgnoreOption, JsonOption, MapOption, TableOption
from uplift.cli.render import make_console, print_frame
from uplift.data.log import CONTROL, DEFAULT_TABLE, ColumnMap, read_log

__all__: list[str] = []


@app.command(help="Read and validate an experiment log, and print what it holds.")
def validate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = CONTROL,
    table: TableOption = DEFAULT_TABLE,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json

    check_outputs({"LOG": log_path}, {"--json": json_path})
    log = read_log(
        log_path,
        column_map=ColumnMap.parse(column_map or [], ignore or []),
        control=control,
        table=table,
    )
    summary = log.summary()
    console = make_console()
    print_frame(console, f"{log.source}: {len(log):,} orders, {len(log.arms)} arms", summary)
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
