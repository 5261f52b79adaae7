"""`uplift evaluate`: a saved model judged on a log by the policies it implies."""

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
from uplift.cli.render import make_console, print_frame

__all__: list[str] = []


@app.command(help="Evaluate a saved model on a log: Qini, AUUC, calibration, policy value.")
def evaluate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="Experiment log to score on.")],
    model_dir: ModelDirOption,
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    cost: CostOption = None,
    json_path: JsonOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.data.log import ColumnMap, read_log
    from uplift.models import load_model
    from uplift.models.evaluate import evaluate_model

    check_outputs({"LOG": log_path, "--model-dir": model_dir}, {"--json": json_path})

    model = load_model(model_dir, trust=trust_model)
    column_map = ColumnMap.parse(mapping or [], ignore or [])
    log = read_log(log_path, column_map=column_map, control=model.control)
    costs = parse_numbers(cost, "--cost") if cost else None
    result = evaluate_model(model, log, costs=costs)
    screen = make_console()
    screen.print(f"{model.learner} model from {model_dir} on {len(log):,} orders of {log_path}")
    if result.in_sample:
        screen.print("note: this is the log the model was trained on; its scores are optimistic")
    print_frame(screen, f"ranking per arm ({result.outcome} uplift)", result.by_arm)
    print_frame(screen, "calibration by decile", result.calibration_summary)
    policies = result.policies
    shown = policies[policies["estimator"].isin(["ipw", "dr"])][
        ["policy", "estimator", "value", "ci_lower", "ci_upper", "diff", "treated_share"]
    ]
    print_frame(screen, f"policy value per order ({result.policy_outcome}, net of costs)", shown)
    print_frame(screen, f"model policy minus {result.best_single_arm}", result.versus_best_arm)
    print_frame(screen, "where each arm helps most and where it harms", result.segments)
    rules = result.rules[["arm", "rule", "orders", "share", "fidelity", "mean_effect"]]
    print_frame(screen, "why the model picks each arm (policy tree)", rules)
    if json_path is not None:
        write_json(result.to_dict(), json_path)
