"""`uplift train`, `uplift predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uplift.cli.app import app, parse_numbers
from uplift.cli.options import (
    CostOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    ModelDirOption,
    TrustModelOption,
)
from uplift.cli.render import make_console, print_frame, progress

__all__: list[str] = []


@app.command(help="Fit an uplift model on an experiment log and save it with its model card.")
def train(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="Experiment log to learn from.")],
    model_dir: ModelDirOption,
    learner: Annotated[
        str, typer.Option(help="auto (choose by held-out policy value) or a learner name.")
    ] = "auto",
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    control: Annotated[str, typer.Option(help="Label of the control arm.")] = "control",
    cost: CostOption = None,
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
    from uplift.data.files import check_outputs, write_json
    from uplift.data.log import ColumnMap, read_log
    from uplift.models import read_card, save_model, train_uplift

    check_outputs({"LOG": log_path}, {"--json": json_path}, {"--model-dir": model_dir})
    costs = parse_numbers(cost, "--cost")
    log = read_log(
        log_path, column_map=ColumnMap.parse(mapping or [], ignore or []), control=control
    )
    screen = make_console()
    for note in log.notes:
        screen.print(f"note: {note}")
    with progress() as say:
        model = train_uplift(
            log, learner=learner, costs=costs, seed=seed, validate=validate, progress=say
        )
        say("saving the model")
        save_model(model, model_dir)
    card = read_card(model_dir)
    for note in model.training["notes"][len(log.notes) :]:
        screen.print(f"note: {note}")
    screen.print(
        f"trained {model.learner} on {len(log):,} orders, {len(model.treatment_arms)} treatment "
        f"arms, {len(model.features)} features; saved to {model_dir}"
    )
    if model.selection is not None:
        scores = model.selection.scores
        shown = scores[["learner", "policy_value", "ci_lower", "ci_upper", "qini", "chosen"]]
        title = f"held-out scores ({model.selection.method}, {model.selection.n_orders:,} orders)"
        print_frame(screen, title, shown)
    if json_path is not None:
        write_json(card, json_path)


@app.command(help="Predict retained and revenue uplift per order and arm.")
def predict(
    orders_path: Annotated[
        Path, typer.Argument(metavar="ORDERS", help="Orders to score (.csv, .parquet, .duckdb).")
    ],
    model_dir: ModelDirOption,
    out: Annotated[Path, typer.Option("--out", help="Effects file to write (.csv or .parquet).")],
    mapping: MapOption = None,
    json_path: JsonOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    from uplift.data.files import (
        check_outputs,
        check_table_suffix,
        json_output,
        table_output,
        write_outputs,
    )
    from uplift.data.log import ColumnMap, read_frame
    from uplift.models import load_model
    from uplift.models.uplift_model import predict_table

    check_table_suffix(out)
    inputs = {"ORDERS": orders_path, "--model-dir": model_dir}
    check_outputs(inputs, {"--out": out, "--json": json_path})
    model = load_model(model_dir, trust=trust_model)
    frame = ColumnMap.parse(mapping or []).apply(read_frame(orders_path), str(orders_path))
    effects = predict_table(model, frame, source=str(orders_path))
    table = effects.to_frame().reset_index(drop=True)
    means = {str(k): float(v) for k, v in table.drop(columns="order_id").mean().items()}
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
