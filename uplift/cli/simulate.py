"""`uplift simulate`: write a simulated log and, in a separate file, its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uplift.cli.app import app
from uplift.cli.options import JsonOption
from uplift.cli.render import make_console
from uplift.exceptions import ConfigError

__all__: list[str] = []


def default_truth_path(out: Path) -> Path:
    """``orders.parquet`` -> ``orders.truth.parquet``: beside the log, never inside it."""
    return out.with_name(f"{out.stem}.truth{out.suffix}")


@app.command(help="Simulate the order world: a log of orders, arms and outcomes, with truth.")
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Log file to write (.csv or .parquet).")],
    orders: Annotated[int, typer.Option(help="Number of eligible orders.")] = 100_000,
    weeks: Annotated[int, typer.Option(help="Number of ISO weeks the orders span.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    world: Annotated[
        str,
        typer.Option(
            help="How hard the world is: easy (large, observed effects), realistic (the size "
            "and noise of real nudges) or hard."
        ),
    ] = "realistic",
    truth_out: Annotated[
        Path | None,
        typer.Option(help="Truth file (default: LOG's name with .truth before the suffix)."),
    ] = None,
    logged_policy: Annotated[
        bool,
        typer.Option(
            "--logged-policy",
            help="Assign arms by a targeting policy with known propensities, not at random.",
        ),
    ] = False,
    control_share: Annotated[
        float, typer.Option(help="Share of orders held out on control when randomised.")
    ] = 0.2,
    start_week: Annotated[str, typer.Option(help="First ISO week, e.g. 2026-W40.")] = "2026-W40",
    drift: Annotated[
        float, typer.Option(help="Scale of week-to-week change in base rates and mix (0 = none).")
    ] = 1.0,
    effect_drift: Annotated[
        float, typer.Option(help="Fraction of every arm's effect lost by the last week.")
    ] = 0.0,
    first_order_id: Annotated[int, typer.Option(help="order_id of the first order.")] = 1,
    orders_from: Annotated[
        Path | None,
        typer.Option(
            "--orders-from",
            help="Instead of a new world: pending orders whose outcomes to draw under --assign.",
        ),
    ] = None,
    assign: Annotated[
        Path | None,
        typer.Option(
            "--assign", help="With --orders-from: the queue (order_id, arm, propensity) to apply."
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="With --orders-from: their truth (default: its name with .truth before the "
            "suffix).",
        ),
    ] = None,
    json_path: JsonOption = None,
) -> None:
    from rich.table import Table

    from uplift.data.files import (
        check_outputs,
        check_table_suffix,
        json_output,
        table_output,
        write_outputs,
    )
    from uplift.data.log import iso_week
    from uplift.data.simulate import simulate as simulate_world

    if orders_from is not None or assign is not None:
        _outcomes(orders_from, assign, truth, out, seed, json_path)
        return
    truth_path = truth_out or default_truth_path(out)
    check_table_suffix(out)
    check_table_suffix(truth_path)
    if truth_path.resolve() == out.resolve():
        raise ConfigError(f"--truth-out {truth_path} is the log file: the truth needs its own file")
    check_outputs({}, {"--out": out, "--truth-out": truth_path, "--json": json_path})
    simulated = simulate_world(
        orders,
        weeks,
        seed,
        world=world,
        logged_policy=logged_policy,
        control_share=control_share,
        start_week=start_week,
        drift=drift,
        effect_drift=effect_drift,
        first_order_id=first_order_id,
    )
    arms = simulated.arm_summary()
    week = iso_week(simulated.log["assigned_at"])
    weekly = simulated.log.groupby(week)["cancelled"].agg(orders="size", cancel_rate="mean")
    payload = {
        "orders": len(simulated.log),
        "weeks": weeks,
        "seed": seed,
        "world": world,
        "assignment": "logged_policy" if logged_policy else "randomised",
        "start_week": start_week,
        "drift": drift,
        "effect_drift": effect_drift,
        "first_order_id": first_order_id,
        "cancel_rate": float(simulated.log["cancelled"].mean()),
        "arms": arms,
        "weeks_summary": weekly.rename_axis("week").reset_index(),
        "log": str(out),
        "truth": str(truth_path),
    }
    write_outputs(
        table_output(simulated.log, out),
        table_output(simulated.truth, truth_path),
        json_output(payload, json_path) if json_path is not None else None,
    )

    table = Table(
        title=f"Simulated {len(simulated.log):,} orders over {weeks} week(s) from {start_week}"
    )
    for column in ("arm", "orders", "share", "cancel rate", "true cancel rate"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for row in arms.itertuples(index=False):
        table.add_row(
            str(row.arm),
            f"{row.orders:,}",
            f"{row.share:.1%}",
            f"{row.cancel_rate:.2%}",
            f"{row.true_cancel_rate:.2%}",
        )
    console = make_console()
    console.print(table)
    by_week = ", ".join(f"{w} {rate:.2%}" for w, rate in weekly["cancel_rate"].items())
    console.print(
        f"assignment: {payload['assignment']}; cancel rate {payload['cancel_rate']:.2%} overall, "
        f"by week: {by_week}"
    )
    console.print(f"log   -> {out}")
    console.print(f"truth -> {truth_path} (ground truth: never train on it)")
    if json_path is not None:
        console.print(f"json  -> {json_path}")


def _outcomes(
    orders_path: Path | None,
    assign: Path | None,
    truth: Path | None,
    out: Path,
    seed: int,
    json_path: Path | None,
) -> None:
    """``--orders-from PENDING --assign QUEUE``: the log those orders make under that queue."""
    from uplift.data.files import (
        check_outputs,
        check_table_suffix,
        json_output,
        table_output,
        write_outputs,
    )
    from uplift.data.log import read_frame
    from uplift.data.outcomes import simulate_outcomes

    if orders_path is None or assign is None:
        raise ConfigError("--orders-from and --assign go together: give both")
    truth_path = truth or default_truth_path(orders_path)
    check_table_suffix(out)
    inputs = {"--orders-from": orders_path, "--assign": assign, "--truth": truth_path}
    check_outputs(inputs, {"--out": out, "--json": json_path})
    if not truth_path.is_file():
        raise ConfigError(
            f"{truth_path}: no truth for {orders_path}; name the world's truth file with --truth"
        )
    log = simulate_outcomes(
        read_frame(orders_path),
        read_frame(truth_path),
        read_frame(assign),
        seed=seed,
        source=str(assign),
    )
    summary = log.groupby("arm")["cancelled"].agg(orders="size", cancel_rate="mean")
    payload = {"orders": len(log), "seed": seed, "log": str(out), "arms": summary.reset_index()}
    write_outputs(
        table_output(log, out),
        json_output(payload, json_path) if json_path is not None else None,
    )
    rates = ", ".join(f"{arm} {row.cancel_rate:.2%}" for arm, row in summary.iterrows())
    make_console().print(f"{len(log):,} orders under {assign}: cancel rate by arm {rates}")
    make_console().print(f"log   -> {out}")
