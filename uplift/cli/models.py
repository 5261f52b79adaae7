"""`uplift train`, `uplift predict`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from uplift.cli.app import app
from uplift.cli.options import (
    ENGINES,
    AllowOption,
    ConfigOption,
    ControlOption,
    CostOption,
    DirectionOption,
    EngineOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    ModelDirOption,
    OrderValueOption,
    SparkMasterOption,
    TrustModelOption,
)
from uplift.cli.render import make_console, print_frame, progress
from uplift.cli.settings import LogSettings, check_control, directions, log_settings, numbers

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console

    from uplift.data.log import ExperimentLog
    from uplift.models.uplift_model import UpliftModel

# The learners' names, for --help; kept in step with the catalog by a test.
LEARNER_NAMES = (
    "t_lgbm, s_lgbm, dr_lgbm, s_linear, s_blend, causalml_t, causalml_s, causalml_x, "
    "causalml_r, causalml_dr, econml_dr, econml_forest"
)

__all__ = ["background", "preparing", "spark_output_dir"]


@app.command(help="Fit an uplift model on an experiment log and save it with its model card.")
def train(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="Experiment log to learn from.")],
    model_dir: ModelDirOption,
    learner: Annotated[
        str,
        typer.Option(help=f"auto (choose by held-out policy value) or one of: {LEARNER_NAMES}."),
    ] = "auto",
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
    cost: CostOption = None,
    direction: DirectionOption = None,
    test_share: Annotated[
        float | None,
        typer.Option(help="Keep this share of the orders out of training and evaluate on them."),
    ] = None,
    test_from: Annotated[
        str | None,
        typer.Option(help="Keep the orders of this ISO week and later out, and evaluate on them."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same model.")] = 0,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="Score a named --learner on cross-fitted folds for its card (auto always "
            "does); --no-validate only fits it.",
        ),
    ] = True,
    json_path: JsonOption = None,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from uplift.data.files import check_outputs, write_json
    from uplift.data.leaks import refuse_leaks
    from uplift.data.log import prepare_reading, read_log
    from uplift.data.split import split_log

    inputs = {"LOG": log_path, "--config": config}
    check_outputs(inputs, {"--json": json_path}, {"--model-dir": model_dir})
    settings = log_settings(config, mapping, ignore, control, order_value=order_value, allow=allow)
    costs = numbers(settings.project.costs, cost, "--cost")
    known = directions(settings.project, direction)
    prepare_reading()
    with ThreadPoolExecutor(1) as reader:
        # The model code (a second of imports) loads while a thread reads the log.
        reading = reader.submit(
            read_log, log_path, column_map=settings.column_map, control=settings.control
        )
        from uplift.models import read_card, save_model, train_uplift

        log = reading.result()
    refuse_leaks(log, allow=settings.allow)
    held_out = None
    if test_share is not None or test_from is not None:
        log, held_out = split_log(log, test_share=test_share, test_from=test_from, seed=seed)
    screen = make_console()
    for note in log.notes:
        screen.print(f"note: {note}")
    with progress() as say:
        model = train_uplift(
            log,
            learner=learner,
            costs=costs,
            seed=seed,
            validate=validate,
            progress=say,
            causes=settings.project.causes,
            directions=known,
        )
        say("saving the model")
        save_model(model, model_dir)
    card = read_card(model_dir)
    screen.print(
        f"trained {model.learner} on {len(log):,} orders, {len(model.treatment_arms)} treatment "
        f"arms, {len(model.features)} features; saved to {model_dir}"
    )
    if model.selection is not None:
        scores = model.selection.scores
        shown = scores[["learner", "policy_value", "ci_lower", "ci_upper", "qini", "chosen"]]
        title = f"held-out scores ({model.selection.method}, {model.selection.n_orders:,} orders)"
        print_frame(screen, title, shown)
    payload = dict(card)
    if held_out is not None:
        payload["held_out"] = _evaluate_held_out(model, held_out, costs, settings, screen)
    if json_path is not None:
        write_json(payload, json_path)


def _evaluate_held_out(
    model: UpliftModel,
    held_out: ExperimentLog,
    costs: dict[str, float],
    settings: LogSettings,
    screen: Console,
) -> dict[str, Any]:
    """The model judged on the orders kept out of its training: the verdict and the values."""
    from uplift.models.evaluate import evaluate_model
    from uplift.models.verdict import verdict_sentence
    from uplift.reports.captions import qini_caption

    result = evaluate_model(model, held_out, costs=costs)
    screen.print(f"on the {len(held_out):,} held-out orders:")
    screen.print(
        verdict_sentence(
            result, outcome_words=settings.project.words.kept, currency=settings.project.currency
        )
    )
    screen.print(qini_caption(result.by_arm), soft_wrap=True, markup=False, highlight=False)
    return result.to_dict()


@app.command(help="Predict retained and revenue uplift per order and arm.")
def predict(
    orders_path: Annotated[
        Path, typer.Argument(metavar="ORDERS", help="Orders to score (.csv, .parquet, .duckdb).")
    ],
    model_dir: ModelDirOption,
    out: Annotated[Path, typer.Option("--out", help="Effects file to write (.csv or .parquet).")],
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    config: ConfigOption = None,
    json_path: JsonOption = None,
    trust_model: TrustModelOption = False,
    engine: EngineOption = "pandas",
    spark_master: SparkMasterOption = "local[*]",
) -> None:
    import pandas as pd

    from uplift.exceptions import check_option

    check_option("--engine", engine, ENGINES)
    if engine == "spark":
        _predict_on_spark(
            orders_path,
            model_dir,
            out,
            json_path,
            trust_model,
            spark_master,
            log_settings(config, mapping, ignore, control, order_value=order_value),
            given_control=control,
            config=config,
        )
        return

    from uplift.data.files import (
        check_outputs,
        check_table_suffix,
        json_output,
        table_output,
        write_outputs,
    )
    from uplift.data.log import read_frame
    from uplift.models import load_model
    from uplift.models.risk import RISK_COLUMNS
    from uplift.models.uplift_model import predict_table

    check_table_suffix(out)
    inputs = {"ORDERS": orders_path, "--model-dir": model_dir, "--config": config}
    check_outputs(inputs, {"--out": out, "--json": json_path})
    settings = log_settings(config, mapping, ignore, control, order_value=order_value)
    model = load_model(model_dir, trust=trust_model)
    check_control(settings.control if control or settings.project.control else None, model)
    with preparing(model):
        orders = read_frame(orders_path)
        frame = settings.column_map.to_orders(orders).apply(orders, str(orders_path))
        effects = predict_table(model, frame, source=str(orders_path))
    table = effects.to_frame().reset_index(drop=True)
    means = {str(k): float(v) for k, v in table.drop(columns="order_id").mean().items()}
    if model.risk_model is not None:
        # Risk and its cause beside the effects: rank and readers of the file ignore extra columns.
        risk = model.predict_risk(frame).reset_index(drop=True)
        table = pd.concat([table, risk[list(RISK_COLUMNS)]], axis=1)
    payload = {"orders": len(table), "out": str(out), "mean": means, "control": model.control}
    write_outputs(
        table_output(table, out, effects.metadata()),
        json_output(payload, json_path) if json_path is not None else None,
    )
    console = make_console()
    console.print(f"wrote {len(table):,} orders x {len(model.treatment_arms)} arms to {out}")
    if out.suffix.lower() == ".csv" and model.control != "control":
        console.print(
            f"note: a CSV file cannot record the control arm; rank these effects with "
            f"--control {model.control!r} (a .parquet file records it)"
        )


@contextmanager
def background() -> Iterator[ThreadPoolExecutor]:
    """One thread for a command's work that needs no orders, done while the orders are read.
    When the command fails, the work not yet started is dropped, so that its error is said
    without waiting for it (the running piece still finishes)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    try:
        yield pool
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


@contextmanager
def preparing(model: UpliftModel) -> Iterator[None]:
    """Run the body (reading the orders, predicting) while a thread does what the model's
    first prediction does whatever the orders: build its trees' tables and load the compiled
    evaluator (:func:`uplift.models.trees.prepare`), and the risk model's tables. pyarrow reads
    without holding the GIL, so with a second core the two overlap; the prediction encodes the
    orders and runs the parts without trees meanwhile, and its first use of the evaluator or
    of a table waits for the thread's (the first to ask builds)."""
    with background() as pool:
        ready = pool.submit(model.prepare)
        yield
        ready.result()


def spark_output_dir(out: Path, option: str = "--out") -> None:
    """Refuse a CSV target for --engine spark, which writes a Parquet directory."""
    from uplift.exceptions import ConfigError

    if out.suffix.lower() == ".csv":
        raise ConfigError(
            f"{option} {out}: --engine spark writes a directory of Parquet files; give a "
            "directory name (e.g. effects.parquet)"
        )


def _predict_on_spark(
    orders_path: Path,
    model_dir: Path,
    out: Path,
    json_path: Path | None,
    trust: bool,
    master: str,
    settings: LogSettings,
    *,
    given_control: str | None,
    config: Path | None,
) -> None:
    """`uplift predict --engine spark`: the effects of every order, as a Parquet directory."""
    from uplift.data.files import check_outputs
    from uplift.spark.session import require_spark

    spark_output_dir(out)
    inputs = {"ORDERS": orders_path, "--model-dir": model_dir, "--config": config}
    check_outputs(inputs, {"--json": json_path}, {"--out": out})
    require_spark()  # one line and exit code 2 when pyspark or Java is missing
    from uplift.spark.jobs import predict_job
    from uplift.spark.session import spark_session

    configured = settings.control if given_control or settings.project.control else None
    with progress() as say:
        say(f"starting Spark ({master})")
        spark = spark_session(master)
        say("scoring the orders on Spark")
        done = predict_job(
            spark,
            orders_path,
            model_dir,
            out,
            column_map=settings.column_map,
            trust=trust,
            check_model=lambda model: check_control(configured, model),
            json_path=json_path,
        )
    console = make_console()
    console.print(
        f"wrote {done.orders:,} orders x {len(done.model.treatment_arms)} arms to {out} "
        "(a Parquet directory)"
    )
