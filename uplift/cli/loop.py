"""`uplift ingest`, `uplift weekly`: the store and the weekly job."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from uplift.cli.app import app, parse_numbers
from uplift.cli.options import CapacityOption, ControlOption, CostOption, JsonOption, MapOption
from uplift.cli.render import progress
from uplift.data.log import CONTROL

if TYPE_CHECKING:
    from uplift.loop.weekly import WeeklyResult

__all__: list[str] = []

StoreOption = Annotated[
    Path, typer.Option("--store", help="The DuckDB store file.", show_default=True)
]
WeekOption = Annotated[str | None, typer.Option("--week", help="ISO week, YYYY-Www.")]


@app.command(help="Append a week's experiment log to the store (idempotent by order_id).")
def ingest(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    store: StoreOption = Path("uplift.duckdb"),
    column_map: MapOption = None,
    control: ControlOption = CONTROL,
    week: Annotated[
        str | None, typer.Option(help="Week of every order, when the log has no assigned_at.")
    ] = None,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.data.log import ColumnMap, read_log
    from uplift.loop.store import Store, file_sha256

    check_outputs({"LOG": log_path, "--store": store}, {"--json": json_path})
    log = read_log(log_path, column_map=ColumnMap.parse(column_map or []), control=control)
    result = Store(store).ingest(log, week=week, sha256=file_sha256(log_path))
    typer.echo(
        f"{log_path}: {result.n_rows:,} orders read, {result.n_new:,} new in {store} "
        f"(weeks {', '.join(result.weeks)})"
    )
    for note in log.notes:
        typer.echo(f"note: {note}")
    if json_path is not None:
        write_json({**asdict(result), "store": str(store)}, json_path)


@app.command(help="The weekly job: ingest, read out, retrain, check, rank, write the report.")
def weekly(
    store: StoreOption = Path("uplift.duckdb"),
    week: WeekOption = None,
    out: Annotated[Path, typer.Option(help="Folder of the reports.")] = Path("reports"),
    inbox: Annotated[
        Path | None, typer.Option(help="Folder of new logs to ingest first (.csv, .parquet).")
    ] = None,
    pending: Annotated[
        Path | None, typer.Option(help="Orders awaiting a decision, to rank into a queue.")
    ] = None,
    cost: CostOption = None,
    capacity: CapacityOption = None,
    budget: Annotated[float, typer.Option(help="Most spent on the queue.")] = math.inf,
    holdout: Annotated[float, typer.Option(help="Share of the queue kept on control.")] = 0.1,
    explore: Annotated[
        float,
        typer.Option(
            help="Share of the queue given a random arm, so that other policies can be valued "
            "on the policy's own log."
        ),
    ] = 0.0,
    # The weekly job's DEFAULT_LEARNER, spelled out: the command line starts without the job.
    learner: Annotated[str, typer.Option(help="Learner of the challenger.")] = "s_lgbm",
    window: Annotated[int, typer.Option(help="Weeks before the newest to train on.")] = 4,
    segment: Annotated[
        list[str] | None,
        typer.Option(
            "--segment",
            help="Column to read out by (repeat; default: text features, <= 12 levels).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.loop.weekly import WeeklyConfig, run_weekly

    # The reports folder is an output too: never the store, never inside the inbox.
    inputs = {"--store": store, "--inbox": inbox, "--pending": pending}
    check_outputs(inputs, {"--json": json_path}, {"--out": out})
    config = WeeklyConfig(
        store=store,
        out=out,
        inbox=inbox,
        pending=pending,
        costs=parse_numbers(cost, "--cost"),
        capacity=parse_numbers(capacity, "--capacity"),
        budget=budget,
        holdout=holdout,
        explore=explore,
        learner=learner,
        window=window,
        seed=seed,
        segments=tuple(segment) if segment else None,
    )
    with progress() as say:
        result = run_weekly(config, week, progress=say)
    print_result(result)
    if json_path is not None:
        paths = {k: str(v) for k, v in result.paths.items()}
        write_json({**result.report.to_dict(), "files": paths}, json_path)


def print_result(result: WeeklyResult) -> None:
    """The few lines a scheduler's log should hold about one week."""
    from uplift.reports.render import headline_cards

    report = result.report
    typer.echo(f"week {result.week}: {report.headline.orders:,} orders")
    for label, text in headline_cards(report.headline):
        typer.echo(f"  {label}: {text}")
    if not report.policy.empty:
        total = report.policy.iloc[-1]
        typer.echo(
            f"  the policy against its holdout: {total['protected']:,.0f} net protected "
            f"({total['protected_ci_lower']:,.0f} to {total['protected_ci_upper']:,.0f})"
        )
    if report.learn is not None:
        state = "DISAGREE (flagged)" if report.learn.flagged else "agree"
        typer.echo(f"  last week's predictions and the holdout: {state}")
    verdict = "promoted" if result.promoted else "kept"
    typer.echo(f"  champion: {result.champion_id} ({verdict})")
    if result.queue is not None:
        typer.echo(f"  queue: {len(result.queue):,} orders ranked")
    typer.echo(f"  report: {result.paths['html']}")
