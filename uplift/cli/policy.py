"""`uplift rank`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from uplift.cli.app import app, parse_numbers
from uplift.cli.models import background, spark_output_dir
from uplift.cli.options import (
    ENGINES,
    CapacityOption,
    ConfigOption,
    CostOption,
    EngineOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    OrderValueOption,
    SparkMasterOption,
    TrustModelOption,
)
from uplift.cli.render import make_console, print_frame, progress
from uplift.cli.settings import check_control, log_settings, numbers
from uplift.data.project import resolve
from uplift.exceptions import ConfigError, SchemaError, describe_rows

if TYPE_CHECKING:
    import pandas as pd

    from uplift.data.log import ColumnMap
    from uplift.data.project import Project
    from uplift.models.effects import Effects
    from uplift.models.uplift_model import UpliftModel
    from uplift.policy.ranking import Assignment
    from uplift.spark.allocation import SparkAssignment

__all__: list[str] = []


@app.command(help="Rank pending orders into a queue by net value, within capacity and budget.")
def rank(
    orders_path: Annotated[
        Path,
        typer.Argument(
            metavar="ORDERS", help="Pending orders (features, order_id, order_value) to rank."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Queue file to write (.csv or .parquet).")],
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="Model directory to predict with.")
    ] = None,
    effects_path: Annotated[
        Path | None,
        typer.Option("--effects", help="Precomputed effects (from `uplift predict`) to rank."),
    ] = None,
    cost: CostOption = None,
    voucher: Annotated[
        list[str] | None,
        typer.Option("--voucher", help="arm=X: a cost paid only when the order is kept."),
    ] = None,
    capacity: CapacityOption = None,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Total cost the queue may spend.")
    ] = None,
    holdout: Annotated[
        float | None,
        typer.Option("--holdout", help="Share of orders kept on control at random [default: 0]."),
    ] = None,
    explore: Annotated[
        float | None,
        typer.Option("--explore", help="Share of orders given a random arm [default: 0]."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the holdout and exploration.")] = 0,
    design: Annotated[
        Path | None, typer.Option("--design", help="design.toml whose costs to use.")
    ] = None,
    json_path: JsonOption = None,
    trust_model: TrustModelOption = False,
    control: Annotated[
        str | None,
        typer.Option(
            "--control",
            help="Control arm of an --effects file that does not record it (CSV, or written "
            "before effects files named it); default: the project's, else control.",
        ),
    ] = None,
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    order_value: OrderValueOption = None,
    config: ConfigOption = None,
    engine: EngineOption = "pandas",
    spark_master: SparkMasterOption = "local[*]",
) -> None:
    from uplift.exceptions import check_option

    check_option("--engine", engine, ENGINES)
    if engine == "spark":
        flags = _SparkRank(
            model_dir=model_dir,
            effects_path=effects_path,
            cost=cost,
            voucher=voucher,
            capacity=capacity,
            budget=budget,
            holdout=holdout,
            explore=explore,
            seed=seed,
            design=design,
            json_path=json_path,
            trust_model=trust_model,
            control=control,
            config=config,
        )
        settings = log_settings(config, mapping, ignore, order_value=order_value)
        _rank_on_spark(orders_path, out, flags, settings.project, settings.column_map, spark_master)
        return

    import importlib

    from uplift.data.files import (
        check_outputs,
        check_table_suffix,
        json_output,
        table_output,
        write_outputs,
    )
    from uplift.data.log import read_frame
    from uplift.models import load_model

    check_table_suffix(out)
    if (model_dir is None) == (effects_path is None):
        raise ConfigError("give exactly one of --model-dir DIR and --effects EFFECTS")
    inputs = {
        "ORDERS": orders_path,
        "--model-dir": model_dir,
        "--effects": effects_path,
        "--design": design,
        "--config": config,
    }
    check_outputs(inputs, {"--out": out, "--json": json_path})
    settings = log_settings(config, mapping, ignore, order_value=order_value)
    project = settings.project
    # One thread does in turn what needs no orders: import the ranking code, load the model,
    # ready its evaluator and tables (see uplift.cli.models.preparing), import scikit-learn
    # (the reasons' tree: a second) and SciPy's solver (ties at a capacity: 0.4 s). The orders
    # are read meanwhile (pyarrow reads without the GIL), and the prediction runs during the
    # last three (the trees are evaluated without the GIL). A fault in the orders is still
    # reported before one in the model, and without waiting for the thread's queued work.
    with background() as pool, progress() as say:
        ranking = pool.submit(importlib.import_module, "uplift.policy.ranking")
        loading = pool.submit(load_model, model_dir, trust=trust_model) if model_dir else None
        if loading is not None:
            pool.submit(lambda: loading.result().prepare())
        for later in ("sklearn.tree", "scipy.optimize"):
            pool.submit(importlib.import_module, later)
        raw = read_frame(orders_path)
        ranking.result()
        from uplift.policy.ranking import (
            check_order_arms,
            check_unique_ids,
            explain_queue,
            order_ids,
            rank_orders,
            with_risk,
        )

        orders = settings.column_map.to_orders(raw).apply(raw, str(orders_path))
        if "order_id" in orders.columns:
            check_unique_ids(orders["order_id"], str(orders_path))
        control = control or project.control
        say(f"predicting {len(orders):,} orders" if model_dir else "reading the effects")
        model = loading.result() if loading is not None else None
        effects = _effects(orders, orders_path, model, effects_path, control)
        check_order_arms(orders, effects.treatment_arms, effects.control, source=str(orders_path))
        # Later wins: the model's training costs, the project's, the design's, the flags'.
        costs = {
            **_card_costs(model_dir),
            **project.costs,
            **_design_costs(design),
            **parse_numbers(cost, "--cost"),
        }
        vouchers = numbers(project.vouchers, voucher, "--voucher")
        say("allocating the arms")
        assignment = rank_orders(
            effects,
            costs=costs,
            vouchers=vouchers,
            capacity=numbers(project.capacities, capacity, "--capacity"),
            budget=resolve(budget, project.budget, None),
            holdout=resolve(holdout, project.holdout, 0.0),
            explore=resolve(explore, project.explore, 0.0),
            seed=seed,
        )
        queue = assignment.queue
        if model is not None:
            say("explaining the arms")
            # The risks in the thread (idle by now) while the reasons' tree is fitted: both
            # spend most of their time outside the GIL (tree evaluation, scikit-learn's fit).
            risk = pool.submit(model.predict_risk, orders) if model.risk_model is not None else None
            features = orders[list(model.features)]
            queue = explain_queue(assignment, features, effects, costs, vouchers)
            if risk is not None:
                say("risk and its cause")
                queue = with_risk(queue, risk.result(), order_ids(effects))
    write_outputs(
        table_output(queue, out),
        json_output(_payload(assignment, out), json_path) if json_path is not None else None,
    )
    _print(assignment, out, costs, project)


def _effects(
    orders: pd.DataFrame,
    source: Path,
    model: UpliftModel | None,
    effects_path: Path | None,
    control: str | None,
) -> Effects:
    """Predicted effects of every order, keyed by order_id."""
    if model is not None:
        from uplift.models.uplift_model import predict_table

        check_control(control, model)
        return predict_table(model, orders, source=str(source))
    return _read_effects(orders, source, Path(str(effects_path)), control)


def _read_effects(orders: pd.DataFrame, source: Path, path: Path, control: str | None) -> Effects:
    """The rows of a precomputed effects file for the orders of ``source``, in their order."""
    from uplift.data.log import read_frame
    from uplift.models.effects import read_effects
    from uplift.policy.ranking import check_unique_ids

    effects = read_frame(path)
    for name, frame in ((str(source), orders), (str(path), effects)):
        if "order_id" not in frame.columns:
            raise SchemaError(f"{name}: no order_id column; the queue keys every order by it")
        check_unique_ids(frame["order_id"], name)
    missing = ~orders["order_id"].isin(effects["order_id"]).to_numpy()
    if missing.any():
        raise SchemaError(
            f"{path}: no effects for the orders of {source} in "
            f"{describe_rows(orders.index[missing] + 1)}"
        )
    rows = effects.set_index("order_id").loc[orders["order_id"]].reset_index()
    return read_effects(path, rows, control=control)


def _card_costs(model_dir: Path | None) -> dict[str, float]:
    """The costs the model was trained with (its card keeps them); --design and --cost win."""
    if model_dir is None:
        return {}
    from uplift.models import read_card

    training = read_card(model_dir).get("training") or {}
    return {str(arm): float(c) for arm, c in (training.get("costs") or {}).items()}


def _design_costs(design: Path | None) -> dict[str, float]:
    if design is None:
        return {}
    from uplift.experiment.design import Design

    return dict(Design.read(design).costs)


def _print(
    assignment: Assignment | SparkAssignment, out: Path, costs: dict[str, float], project: Project
) -> None:
    console = make_console()
    print_frame(console, f"queue written to {out}", assignment.summary, digits=6)
    used = ", ".join(f"{arm}={c:g}" for arm, c in sorted(costs.items())) or "none"
    console.print(f"costs per use of an arm: {used}")
    budget = assignment.budget
    console.print(
        f"cost spent {project.money(assignment.budget_used)}"
        + (f" of {project.money(budget)}" if budget is not None else "")
        + f"; the LP bound on the net value is {project.money(assignment.upper_bound)}"
    )
    console.print(_closing(assignment, project))


def _closing(assignment: Assignment | SparkAssignment, project: Project) -> str:
    """The last line: what the queue is expected to earn and how many orders each arm gets."""
    summary = assignment.summary.iloc[1:]  # the control arm first: no action, no value
    counts = dict(zip(summary["arm"].astype(str), summary["orders"].astype(int), strict=True))
    treated = ", ".join(f"{arm} {n:,}" for arm, n in counts.items() if n)
    return (
        f"expected incremental net value {project.money(assignment.objective)} from "
        f"{int(summary['orders'].sum()):,} orders treated ({treated or 'none'})"
    )


def _payload(assignment: Assignment, out: Path) -> dict[str, Any]:
    return {
        "out": str(out),
        "orders": len(assignment.queue),
        "objective": assignment.objective,
        "upper_bound": assignment.upper_bound,
        "budget": assignment.budget,
        "budget_used": assignment.budget_used,
        "budget_price": assignment.budget_price,
        "params": dict(assignment.params),
        "summary": assignment.summary,
    }


@dataclass(frozen=True)
class _SparkRank:
    """The options of `uplift rank` that --engine spark passes on."""

    model_dir: Path | None
    effects_path: Path | None
    cost: list[str] | None
    voucher: list[str] | None
    capacity: list[str] | None
    budget: float | None
    holdout: float | None
    explore: float | None
    seed: int
    design: Path | None
    json_path: Path | None
    trust_model: bool
    control: str | None
    config: Path | None


def _rank_on_spark(
    orders_path: Path,
    out: Path,
    flags: _SparkRank,
    project: Project,
    column_map: ColumnMap,
    master: str,
) -> None:
    """`uplift rank --engine spark`: the queue as a Parquet directory (see uplift.spark)."""
    from uplift.data.files import check_outputs
    from uplift.spark.session import require_spark

    spark_output_dir(out)
    if (flags.model_dir is None) == (flags.effects_path is None):
        raise ConfigError("give exactly one of --model-dir DIR and --effects EFFECTS")
    inputs = {
        "ORDERS": orders_path,
        "--model-dir": flags.model_dir,
        "--effects": flags.effects_path,
        "--design": flags.design,
        "--config": flags.config,
    }
    check_outputs(inputs, {"--json": flags.json_path}, {"--out": out})
    control = flags.control or project.control
    # Later wins, as on pandas: the model's training costs, the project's, the design's, flags.
    costs = {
        **_card_costs(flags.model_dir),
        **project.costs,
        **_design_costs(flags.design),
        **parse_numbers(flags.cost, "--cost"),
    }
    options = {
        "vouchers": numbers(project.vouchers, flags.voucher, "--voucher"),
        "capacity": numbers(project.capacities, flags.capacity, "--capacity"),
        "budget": resolve(flags.budget, project.budget, None),
        "holdout": resolve(flags.holdout, project.holdout, 0.0),
        "explore": resolve(flags.explore, project.explore, 0.0),
        "seed": flags.seed,
    }
    require_spark()  # one line and exit code 2 when pyspark or Java is missing
    from uplift.spark.jobs import rank_job
    from uplift.spark.session import spark_session

    with progress() as say:
        say(f"starting Spark ({master})")
        spark = spark_session(master)
        say("ranking the orders on Spark")
        assignment, used = rank_job(
            spark,
            orders_path,
            out,
            column_map=column_map,
            model_dir=flags.model_dir,
            effects_path=flags.effects_path,
            trust=flags.trust_model,
            check_model=lambda model: check_control(control, model),
            control=control,
            costs=lambda model: costs,
            options=options,
            json_path=flags.json_path,
            payload=lambda done, orders: _spark_payload(done, out, orders),
        )
    _print(assignment, out, used, project)


def _spark_payload(assignment: SparkAssignment, out: Path, orders: int) -> dict[str, Any]:
    """The --json of the Spark queue: the pandas engine's keys, and how prices were found."""
    return {
        "out": str(out),
        "orders": orders,
        "objective": assignment.objective,
        "upper_bound": assignment.upper_bound,
        "budget": assignment.budget,
        "budget_used": assignment.budget_used,
        "budget_price": assignment.budget_price,
        "params": dict(assignment.params),
        "summary": assignment.summary,
        "certificate": dict(assignment.certificate),
    }
