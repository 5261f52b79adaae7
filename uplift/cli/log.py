"""`uplift validate` (read a log, check it, print what it holds) and `uplift init`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uplift.cli.app import app
from uplift.cli.options import (
    AllowOption,
    ConfigOption,
    ControlOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    OrderValueOption,
    TableOption,
)
from uplift.cli.render import make_console, print_frame
from uplift.cli.settings import log_settings
from uplift.data.log import DEFAULT_TABLE, read_log
from uplift.data.project import PROJECT_FILE
from uplift.exceptions import ConfigError

__all__: list[str] = []


@app.command(help="Read and validate an experiment log, and print what it holds.")
def validate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
    table: TableOption = DEFAULT_TABLE,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.data.leaks import check_leaks

    check_outputs({"LOG": log_path, "--config": config}, {"--json": json_path})
    settings = log_settings(
        config, column_map, ignore, control, order_value=order_value, allow=allow
    )
    log = read_log(log_path, column_map=settings.column_map, control=settings.control, table=table)
    leaks = check_leaks(log, allow=settings.allow)
    summary = log.summary()
    console = make_console()
    print_frame(console, f"{log.source}: {len(log):,} orders, {len(log.arms)} arms", summary)
    console.print(f"features ({len(log.features)}): {', '.join(log.features)}")
    for note in log.notes:
        console.print(f"note: {note}")
    for column in leaks.refused:
        console.print(
            f"warning: feature {column!r} differs by arm far beyond chance, as a post-treatment "
            "or targeting column does; train, ingest and readout --adjust refuse it: leave it "
            f"out with --ignore {column}, or keep it with --allow {column}"
        )
    if json_path is not None:
        write_json(
            {
                "source": log.source,
                "orders": len(log),
                "control": log.control,
                "features": list(log.features),
                "notes": list(log.notes),
                "leaks": {"flagged": list(leaks.flagged), "refused": list(leaks.refused)},
                "arms": summary,
            },
            json_path,
        )


@app.command(help="Write a project file (uplift.toml) guessed from a log; asks nothing.")
def init(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    out: Annotated[Path, typer.Option("--out", help="Project file to write.")] = Path(PROJECT_FILE),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    table: TableOption = DEFAULT_TABLE,
) -> None:
    from uplift.data.files import atomic_path, check_outputs
    from uplift.data.guess import guess_project, project_text
    from uplift.data.log import read_frame
    from uplift.data.project import load_project

    check_outputs({"LOG": log_path}, {"--out": out})
    if out.exists() and not force:
        raise ConfigError(f"--out {out}: the file exists; pass --force to replace it")
    guess = guess_project(read_frame(log_path, table=table))
    text = project_text(guess, log_path.name)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    load_project(out)  # what init writes, every command must read
    console = make_console()
    for reason in guess.reasons:
        console.print(f"guessed {reason}")
    console.print(f"wrote {out}; check it, then run: uplift validate {log_path} --config {out}")
