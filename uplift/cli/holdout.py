"""`uplift design`, `uplift assign`, `uplift readout`: holdout tests for the growth team."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from uplift.cli.app import app, parse_numbers
from uplift.cli.options import (
    AllowOption,
    ConfigOption,
    ControlOption,
    CostOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    OrderValueOption,
    SparkMasterOption,
    TableOption,
)
from uplift.cli.render import make_console
from uplift.cli.settings import log_settings
from uplift.data.log import CONTROL
from uplift.exceptions import ConfigError, check_option

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from uplift.experiment.design import Design
    from uplift.experiment.readout import Readout

__all__: list[str] = []

ListOption = list[str] | None


@app.command(help="Size a holdout test: sample size, power, duration; writes design.toml.")
def design(
    mde: Annotated[
        float,
        typer.Option(
            help="Smallest effect worth detecting, absolute: a fall of the cancel rate "
            "(0.01 = one point), or a rise of revenue per order with --metric revenue_per_order."
        ),
    ],
    daily_orders: Annotated[float, typer.Option(help="Eligible orders per day.")],
    baseline_cancel_rate: Annotated[
        float | None,
        typer.Option(help="Cancellation rate without intervention (default: the past log's)."),
    ] = None,
    arms: Annotated[
        int | None, typer.Option(help="Number of treatment arms (or name them with --arm).")
    ] = None,
    arm: Annotated[
        ListOption, typer.Option("--arm", help="A treatment arm's name (repeat).")
    ] = None,
    control: ControlOption = None,
    holdout: Annotated[
        float | None,
        typer.Option(help="Share of orders on control (default: equal shares for all arms)."),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Primary metric: cancel_rate or revenue_per_order.")
    ] = "cancel_rate",
    alpha: Annotated[float, typer.Option(help="Family-wise significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power of each arm-vs-control comparison.")] = 0.8,
    correction: Annotated[str, typer.Option(help="holm, bonferroni or none.")] = "holm",
    past_log: Annotated[
        Path | None,
        typer.Option(help="A past log: baseline cancel rate and revenue variance of its control."),
    ] = None,
    revenue_sd: Annotated[
        float | None, typer.Option(help="Standard deviation of revenue per order.")
    ] = None,
    cost: CostOption = None,
    name: Annotated[str, typer.Option(help="Name of the test (its folder).")] = "holdout",
    out_dir: Annotated[Path, typer.Option(help="Where test folders live.")] = Path("experiments"),
    start_date: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: today).")
    ] = None,
    salt: Annotated[
        str | None, typer.Option(help="Assignment salt (default: digest of name and start).")
    ] = None,
    stratify: Annotated[
        str | None, typer.Option(help="Column to stratify the assignment by.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing design.")] = False,
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    config: ConfigOption = None,
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_name, check_outputs, json_output, text_output, write_outputs
    from uplift.data.log import read_log
    from uplift.experiment.design import baselines_from_log, plan_design
    from uplift.experiment.power import CORRECTIONS, METRICS

    check_option("--metric", metric, METRICS)
    check_option("--correction", correction, CORRECTIONS)
    target = out_dir / check_name(name, "--name") / "design.toml"
    inputs = {"--past-log": past_log, "--config": config}
    check_outputs(inputs, {"design file": target, "--json": json_path})
    settings = log_settings(config, column_map, ignore, control)
    control = settings.control
    treatment_arms = _arm_names(arms, arm)
    # The project's costs of the arms under test; --cost wins.
    costs = {a: c for a, c in settings.project.costs.items() if a in treatment_arms}
    costs.update(parse_numbers(cost, "--cost"))
    if target.exists() and not force:
        raise ConfigError(
            f"{target} exists: a running test's design (and salt) must not change; "
            "choose another --name, or pass --force"
        )
    if past_log is not None:
        past = read_log(past_log, column_map=settings.column_map, control=control)
        past_cancel, past_sd = baselines_from_log(past)
        baseline_cancel_rate = baseline_cancel_rate or past_cancel
        revenue_sd = revenue_sd or past_sd
    if baseline_cancel_rate is None:
        raise ConfigError("give --baseline-cancel-rate, or --past-log to take it from")
    planned = plan_design(
        name=name,
        treatment_arms=treatment_arms,
        baseline_cancel_rate=baseline_cancel_rate,
        mde=mde,
        daily_orders=daily_orders,
        control=control,
        holdout=holdout,
        primary_metric=metric,  # type: ignore[arg-type]
        alpha=alpha,
        power=power,
        correction=correction,  # type: ignore[arg-type]
        revenue_sd=revenue_sd,
        costs=costs,
        start_date=_date(start_date),
        salt=salt,
        stratify=stratify,
    )
    # The payload computes every figure of the design: a design that cannot be computed
    # fails here, before design.toml exists.
    payload = _design_payload(planned, target)
    write_outputs(
        text_output(planned.to_toml(), target),
        json_output(payload, json_path) if json_path is not None else None,
    )
    _print_design(planned, target, json_path)


def _arm_names(count: int | None, names: ListOption) -> list[str]:
    if names:
        if count is not None and count != len(names):
            raise ConfigError(f"--arms {count} but {len(names)} --arm name(s) given")
        return list(names)
    if count is None or count < 1:
        raise ConfigError("give --arms K (K >= 1) or name the treatment arms with --arm")
    return [f"arm_{i}" for i in range(1, count + 1)]


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start-date must be YYYY-MM-DD; got {text!r}") from None


def _design_payload(planned: Design, target: Path) -> dict[str, object]:
    return {
        "design": str(target),
        "name": planned.name,
        "arms": planned.allocation,
        "costs": planned.costs,
        "primary_metric": planned.primary_metric,
        "mde": planned.mde,
        "alpha": planned.alpha,
        "comparison_alpha": planned.comparison_alpha,
        "power": planned.power,
        "correction": planned.correction,
        "n_control": planned.n_control,
        "n_per_arm": planned.n_per_arm,
        "days": planned.days,
        "start_date": planned.start_date.isoformat(),
        "end_date": planned.end_date.isoformat(),
        "salt": planned.salt,
        "detectable_effects": planned.detectable_effects(),
    }


def _print_design(planned: Design, target: Path, json_path: Path | None) -> None:
    from rich.table import Table

    console = make_console()
    table = Table(title=f"Holdout test {planned.name}: {len(planned.arms)} arms")
    for column in ("arm", "share", "orders needed", "cost per use"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm_name, share in planned.allocation.items():
        needed = planned.n_control if arm_name == planned.control else planned.n_per_arm
        cost = "-" if arm_name == planned.control else f"{planned.costs[arm_name]:,.2f}"
        table.add_row(arm_name, f"{share:.1%}", f"{needed:,}", cost)
    console.print(table)
    console.print(
        f"{planned.primary_metric}: detect {planned.mde:g} with power {planned.power:.0%} at "
        f"alpha {planned.alpha:g} ({planned.correction}; {planned.comparison_alpha:.4g} per arm)"
    )
    console.print(
        f"duration: {planned.days} days at {planned.daily_orders:,.0f} orders/day, "
        f"{planned.start_date} to {planned.end_date} (salt {planned.salt})"
    )
    effects = planned.detectable_effects()
    for row in effects.itertuples(index=False):
        console.print(f"detectable after {row.days} days: {row.metric} {row.mde:.4g}")
    console.print(f"design -> {target}")
    if json_path is not None:
        console.print(f"json   -> {json_path}")


@app.command(help="Assign orders to arms by hash(salt, order_id), as a design says.")
def assign(
    orders_path: Annotated[
        Path, typer.Argument(metavar="ORDERS", help="CSV, Parquet or DuckDB orders.")
    ],
    design_path: Annotated[Path, typer.Option("--design", help="design.toml of the test.")],
    out: Annotated[Path, typer.Option("--out", help="Assigned orders (.csv or .parquet).")],
    stratify: Annotated[
        str | None, typer.Option(help="Column to stratify by (default: the design's).")
    ] = None,
    table: TableOption = "orders",
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    config: ConfigOption = None,
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
    from uplift.data.log import read_frame
    from uplift.experiment.assignment import assign_arms
    from uplift.experiment.design import Design
    from uplift.experiment.sample_ratio import check_sample_ratio

    check_table_suffix(out)
    inputs = {"ORDERS": orders_path, "--design": design_path, "--config": config}
    check_outputs(inputs, {"--out": out, "--json": json_path})
    planned = Design.read(design_path)
    settings = log_settings(config, column_map, ignore)
    raw = read_frame(orders_path, table=table)
    orders = settings.column_map.to_orders(raw).apply(raw, str(orders_path))
    assigned = assign_arms(orders, planned, stratify=stratify, source=str(orders_path))
    check = check_sample_ratio(assigned["arm"].value_counts(), planned.allocation)
    payload = {"orders": len(assigned), "out": str(out), "counts": check.counts}
    write_outputs(
        table_output(assigned, out),
        json_output(payload, json_path) if json_path is not None else None,
    )
    view = Table(title=f"{len(assigned):,} orders assigned by {design_path}")
    for column in ("arm", "orders", "share", "designed share"):
        view.add_column(column, justify="left" if column == "arm" else "right")
    for row in check.counts.itertuples(index=False):
        view.add_row(
            str(row.arm),
            f"{row.observed:,}",
            f"{row.observed_share:.2%}",
            f"{row.expected_share:.2%}",
        )
    console = make_console()
    console.print(view)
    console.print(f"assigned -> {out} (arm and propensity beside each order)")


@app.command(help="Read out a test: per-arm effects with intervals, SRM check, segments.")
def readout(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="CSV, Parquet or DuckDB log.")],
    column_map: MapOption = None,
    ignore: IgnoreOption = None,
    control: Annotated[
        str | None,
        typer.Option(help="Name of the control arm (default: the design's, else 'control')."),
    ] = None,
    design_path: Annotated[
        Path | None, typer.Option("--design", help="design.toml: allocation, alpha, plan.")
    ] = None,
    adjust: Annotated[
        bool, typer.Option("--adjust", help="Regression adjustment on pre-assignment covariates.")
    ] = False,
    covariate: Annotated[
        ListOption,
        typer.Option("--covariate", help="Pre-assignment covariate for --adjust (repeat)."),
    ] = None,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Add always-valid intervals (weekly looks).")
    ] = False,
    segment: Annotated[
        str | None, typer.Option(help="Categorical column to break effects down by.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Significance level (default: the design's, else 0.05).")
    ] = None,
    order_value: OrderValueOption = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
    table: TableOption = "experiment_log",
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb: sums computed straight from the file, rows never loaded (CSV, Parquet "
            "or DuckDB); spark: sums computed by Spark from a Parquet file or directory "
            "(pip install 'uplift[spark]')."
        ),
    ] = "duckdb",
    spark_master: SparkMasterOption = "local[*]",
    json_path: JsonOption = None,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.experiment.design import Design

    check_option("--engine", engine, ("duckdb", "spark"))
    inputs = {"LOG": log_path, "--design": design_path, "--config": config}
    check_outputs(inputs, {"--json": json_path})
    planned = Design.read(design_path) if design_path is not None else None
    settings = log_settings(
        config,
        column_map,
        ignore,
        control,
        order_value=order_value,
        allow=allow,
        default_control=planned.control if planned else CONTROL,
    )
    options: dict[str, Any] = {
        "design": planned,
        "alpha": alpha,
        "adjust": adjust,
        "covariates": covariate,
        "sequential": sequential,
        "segment": segment,
    }
    if engine == "spark":
        result = _readout_spark(log_path, spark_master, settings, options)
    else:
        result = _readout_duckdb(log_path, table, settings, options)
    if json_path is not None:
        write_json(result.to_dict(), json_path)
    _print_readout(result, json_path)
    if result.srm_failed:
        raise typer.Exit(code=1)


def _readout_duckdb(log_path: Path, table: str, settings: Any, options: dict[str, Any]) -> Readout:
    """Sums straight from a Parquet or CSV file; the log is loaded only when its checks fail
    (then the reader's own validation names the file, column and rows) or for DuckDB input."""
    from uplift.data.log import read_log
    from uplift.experiment.balance import refuse_table_leaks
    from uplift.experiment.readout import readout_table
    from uplift.experiment.scan import scan_file, table_from_log

    found = scan_file(log_path, column_map=settings.column_map, control=settings.control)
    if found is None:
        log = read_log(
            log_path, column_map=settings.column_map, control=settings.control, table=table
        )
        found = table_from_log(log)
    covariates = options["covariates"]
    if options["adjust"]:
        # Adjusting on a post-treatment column biases every effect: only covariates in use count.
        unused = [f for f in found.features if covariates and f not in covariates]
        refuse_table_leaks(found, allow=(*settings.allow, *unused))
    return readout_table(found, **options)


def _readout_spark(log_path: Path, master: str, settings: Any, options: dict[str, Any]) -> Readout:
    from uplift.spark.session import require_spark

    require_spark()
    from uplift.spark.readout import read_log_spark, readout_spark

    frame = read_log_spark(log_path, master)
    return readout_spark(
        frame,
        control=settings.control,
        column_map=settings.column_map,
        source=str(log_path),
        allow=settings.allow,
        **options,
    )


def _print_readout(result: Readout, json_path: Path | None) -> None:
    console = make_console()
    _print_srm(console, result)
    _print_arms(console, result)
    for metric in result.effects["metric"].unique():
        chosen = result.effects[result.effects["metric"] == metric]
        _print_effects(console, chosen, f"{metric}: arm - {result.control}", result)
    if result.adjustment is not None:
        for row in result.adjustment.itertuples(index=False):
            console.print(f"adjustment {row.arm} {row.metric}: {_reduction(row)}")
        console.print(f"covariates: {', '.join(result.covariates)}")
    if result.segments is not None:
        for metric in result.segments["metric"].unique():
            chosen = result.segments[result.segments["metric"] == metric]
            _print_effects(console, chosen, f"{metric} by {result.segment_column}", result)
    for note in result.notes:
        console.print(f"note: {note}")
    if json_path is not None:
        console.print(f"json -> {json_path}")


def _print_srm(console: Console, result: Readout) -> None:
    srm = result.srm
    if srm is None:
        console.print("sample ratio: not checked (no allocation known; pass --design)")
        return
    verdict = "ok" if srm.passed else "[bold red]MISMATCH: the test is broken[/]"
    console.print(
        f"sample ratio: {verdict} (chi-square {srm.statistic:.2f}, p = {srm.p_value:.3g}, "
        f"fails below {srm.threshold:g}; shares from {srm.allocation_source})"
    )


def _print_arms(console: Console, result: Readout) -> None:
    from rich.table import Table

    view = Table(title=f"{result.source}: orders per arm")
    metrics = [c for c in ("retained_rate", "cancel_rate", "revenue_per_order") if c in result.arms]
    for column in ("arm", "orders", "share", *metrics):
        view.add_column(column, justify="left" if column == "arm" else "right")
    for row in result.arms.to_dict(orient="records"):
        values = [_format(m, row[m]) for m in metrics]
        view.add_row(str(row["arm"]), f"{row['n']:,}", f"{row['share']:.2%}", *values)
    console.print(view)


def _reduction(row: Any) -> str:
    """What the adjustment did to one effect's variance, in words that fit its size."""
    width = f"interval width x{row.interval_width_ratio:.3f}"
    if row.variance_reduction < 0.0005:
        # Rounds to 0.0%: the covariates do not predict the outcome, say so plainly.
        return f"no variance reduction (the covariates do not predict it); {width}"
    return f"variance reduced by {row.variance_reduction:.1%}, {width}"


def _format(metric: str, value: float) -> str:
    return f"{value:,.4f}" if metric == "revenue_per_order" else f"{value:.4%}"


def _print_effects(console: Console, effects: pd.DataFrame, title: str, result: Readout) -> None:
    from rich.table import Table

    level = f"{1 - result.alpha:.0%}"
    # With --adjust the difference and interval are adjusted, the two means are not.
    raw = " (raw)" if result.adjustment is not None else ""
    adjusted = " (adjusted)" if result.adjustment is not None else ""
    columns = ["arm", f"control{raw}", f"arm mean{raw}", f"difference{adjusted}"]
    columns += [f"{level} interval", "relative"]
    columns += ["p", f"p ({result.correction})"]
    always_valid = bool(effects["sequential_ci_lower"].notna().any())
    if always_valid:
        columns.append("always-valid interval")
    if "segment" in effects:
        columns.insert(0, "segment")
    view = Table(title=title)
    for column in columns:
        view.add_column(column, justify="left" if column in ("segment", "arm") else "right")
    for row in effects.to_dict(orient="records"):
        m = str(row["metric"])
        cells = [str(row["arm"]), _format(m, row["control_mean"]), _format(m, row["arm_mean"])]
        cells += [_signed(m, row["difference"]), _range(m, row["ci_lower"], row["ci_upper"])]
        cells += [f"{row['relative_difference']:+.2%}", f"{row['p_value']:.3g}"]
        cells.append(f"{row['p_value_adjusted']:.3g}")
        if always_valid:
            cells.append(_range(m, row["sequential_ci_lower"], row["sequential_ci_upper"]))
        if "segment" in effects:
            cells.insert(0, str(row["segment"]))
        view.add_row(*cells)
    console.print(view)


def _signed(metric: str, value: float) -> str:
    return f"{value:+,.4f}" if metric == "revenue_per_order" else f"{value * 100:+.3f} pt"


def _range(metric: str, lower: float, upper: float) -> str:
    return f"[{_signed(metric, lower)}, {_signed(metric, upper)}]"
