"""`uplift ingest`, `uplift weekly`: the store and the weekly job."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from uplift.cli.app import app
from uplift.cli.options import (
    AllowOption,
    CapacityOption,
    ConfigOption,
    ControlOption,
    CostOption,
    DirectionOption,
    IgnoreOption,
    JournalOption,
    JsonOption,
    MapOption,
    OrderValueOption,
    StoreOption,
)
from uplift.cli.render import progress
from uplift.cli.settings import directions, log_settings, numbers
from uplift.data.project import resolve

if TYPE_CHECKING:
    from uplift.loop.weekly import WeeklyResult

__all__: list[str] = []

WeekOption = Annotated[str | None, typer.Option("--week", help="ISO week, YYYY-Www.")]


@app.command(
    help="Append a week's experiment log to the store (idempotent by order_id), after the "
    "service's decision journal. A log without an arm column takes each order's decided arm, "
    "propensity and time."
)
def ingest(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    store: StoreOption = Path("uplift.duckdb"),
    journal: JournalOption = None,
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
    week: Annotated[
        str | None, typer.Option(help="Week of every order, when the log has no assigned_at.")
    ] = None,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.data.leaks import refuse_leaks
    from uplift.loop.outcomes import import_journal, read_outcomes
    from uplift.loop.store import Store, file_sha256

    inputs = {"LOG": log_path, "--store": store, "--config": config, "--journal": journal}
    check_outputs(inputs, {"--json": json_path})
    settings = log_settings(
        config, column_map, ignore, control, order_value=order_value, allow=allow
    )
    records = Store(store)
    # First the service's decisions, so that the log's orders find the arm they were given.
    imported = import_journal(records, journal)
    if imported is not None:
        typer.echo(f"{imported.path}: {imported.n_new:,} new decisions imported")
    log = read_outcomes(log_path, records, column_map=settings.column_map, control=settings.control)
    # The store feeds the weekly job's training: a leaking column must not get in.
    refuse_leaks(log, allow=settings.allow)
    result = records.ingest(log, week=week, sha256=file_sha256(log_path))
    typer.echo(
        f"{log_path}: {result.n_rows:,} orders read, {result.n_new:,} new in {store} "
        f"(weeks {', '.join(result.weeks)})"
    )
    for note in log.notes:
        typer.echo(f"note: {note}")
    if json_path is not None:
        decisions = None if imported is None else asdict(imported)
        write_json({**asdict(result), "store": str(store), "journal": decisions}, json_path)


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
    queue_out: Annotated[
        Path | None,
        typer.Option(help="Also write the ranked queue to this file (.csv or .parquet)."),
    ] = None,
    journal: JournalOption = None,
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
    cost: CostOption = None,
    direction: DirectionOption = None,
    capacity: CapacityOption = None,
    budget: Annotated[
        float | None, typer.Option(help="Most spent on the queue [default: no limit].")
    ] = None,
    holdout: Annotated[
        float | None, typer.Option(help="Share of the queue kept on control [default: 0.1].")
    ] = None,
    explore: Annotated[
        float | None,
        typer.Option(
            help="Share of the queue given a random arm, so that other policies can be valued "
            "on the policy's own log [default: 0]."
        ),
    ] = None,
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
    from uplift.data.files import check_outputs, check_table_suffix, write_json
    from uplift.loop.weekly import WeeklyConfig, run_weekly

    settings = log_settings(
        config, column_map, ignore, control, order_value=order_value, allow=allow
    )
    project = settings.project
    queue_out = queue_out or project.queue_out
    if queue_out is not None:
        check_table_suffix(queue_out)
    # The reports folder is an output too: never the store, never inside the inbox.
    inputs = {
        "--store": store,
        "--inbox": inbox,
        "--pending": pending,
        "--config": config,
        "--journal": journal,
    }
    outputs = {"--json": json_path, "--queue-out": queue_out}
    check_outputs(inputs, outputs, {"--out": out})
    segments = tuple(segment or project.segments)
    job = WeeklyConfig(
        store=store,
        out=out,
        inbox=inbox,
        pending=pending,
        journal=journal,
        costs=numbers(project.costs, cost, "--cost"),
        directions=directions(project, direction),
        capacity=numbers(project.capacities, capacity, "--capacity"),
        budget=resolve(budget, project.budget, math.inf),
        holdout=resolve(holdout, project.holdout, 0.1),
        explore=resolve(explore, project.explore, 0.0),
        learner=learner,
        window=window,
        seed=seed,
        segments=segments or None,
        column_map=settings.column_map,
        control=settings.control,
        allow=settings.allow,
        queue_out=queue_out,
        currency=project.currency,
        words=project.words,
    )
    with progress() as say:
        result = run_weekly(job, week, progress=say)
    print_result(result)
    if json_path is not None:
        paths = {k: str(v) for k, v in result.paths.items()}
        write_json({**result.report.to_dict(), "files": paths}, json_path)


def print_result(result: WeeklyResult) -> None:
    """The few lines a scheduler's log should hold about one week."""
    from uplift.reports.render import headline_cards

    report = result.report
    if result.journal is not None:
        typer.echo(f"{result.journal.path}: {result.journal.n_new:,} new decisions imported")
    typer.echo(f"week {result.week}: {report.headline.orders:,} orders")
    for label, text in headline_cards(report.headline, report.currency, report.outcome_words):
        typer.echo(f"  {label}: {text}")
    if not report.policy.empty:
        total = report.policy.iloc[-1]
        money = f"{report.currency} " if report.currency else ""
        typer.echo(
            f"  the policy against its holdout: {money}{total['protected']:,.0f} net protected "
            f"({total['protected_ci_lower']:,.0f} to {total['protected_ci_upper']:,.0f})"
        )
    if report.learn is not None:
        state = "DISAGREE (flagged)" if report.learn.flagged else "agree"
        typer.echo(f"  last week's predictions and the holdout: {state}")
    verdict = "promoted" if result.promoted else "kept"
    typer.echo(f"  champion: {result.champion_id} ({verdict})")
    if result.queue is not None:
        where = result.paths.get("queue")
        typer.echo(
            f"  queue: {len(result.queue):,} orders ranked, saved in the store"
            + (f" and written to {where}" if where is not None else "")
        )
    typer.echo(f"  report: {result.paths['html']}")
