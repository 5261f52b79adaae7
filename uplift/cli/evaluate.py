"""`uplift evaluate`: a saved model judged on a log by the policies it implies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from uplift.cli.app import app
from uplift.cli.options import (
    ConfigOption,
    ControlOption,
    CostOption,
    IgnoreOption,
    JsonOption,
    MapOption,
    ModelDirOption,
    OrderValueOption,
    TrustModelOption,
)
from uplift.cli.render import make_console, print_frame, progress
from uplift.cli.settings import check_control, log_settings, numbers

if TYPE_CHECKING:
    from rich.console import Console

    from uplift.models.risk_check import RiskCheck

__all__: list[str] = []


@app.command(help="Evaluate a saved model on a log: Qini, AUUC, calibration, policy value.")
def evaluate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="Experiment log to score on.")],
    model_dir: ModelDirOption,
    mapping: MapOption = None,
    ignore: IgnoreOption = None,
    control: ControlOption = None,
    order_value: OrderValueOption = None,
    config: ConfigOption = None,
    cost: CostOption = None,
    truth_path: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="A simulated log's truth file: also check the risk and its cause against it.",
        ),
    ] = None,
    json_path: JsonOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    from uplift.data.files import check_outputs, write_json
    from uplift.data.log import read_frame, read_log
    from uplift.models import load_model
    from uplift.models.evaluate import evaluate_model
    from uplift.models.risk_check import check_risk
    from uplift.models.verdict import calibration_sentence, verdict_sentence
    from uplift.reports.captions import qini_caption

    inputs = {"LOG": log_path, "--model-dir": model_dir, "--config": config, "--truth": truth_path}
    check_outputs(inputs, {"--json": json_path})
    settings = log_settings(config, mapping, ignore, control, order_value=order_value)
    model = load_model(model_dir, trust=trust_model)
    check_control(settings.control if control or settings.project.control else None, model)
    log = read_log(log_path, column_map=settings.column_map, control=model.control)
    # Without costs here or in the project, the evaluation uses the model card's.
    costs = numbers(settings.project.costs, cost, "--cost") or None
    with progress() as say:
        say(f"evaluating {model.learner} on {len(log):,} orders")
        result = evaluate_model(model, log, costs=costs)
        risk = None
        if model.risk_model is not None and log.has_retained:
            say("checking the risk and its cause")
            truth = read_frame(truth_path) if truth_path is not None else None
            risk = check_risk(model, log, truth)
    project = settings.project
    screen = make_console()
    # One line each (soft_wrap): the header, then the verdict, whatever the console's width.
    screen.print(
        f"{model.learner} model from {model_dir} on {len(log):,} orders of {log_path}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    sentence = verdict_sentence(result, outcome_words=project.words.kept, currency=project.currency)
    screen.print(sentence, soft_wrap=True, markup=False, highlight=False)
    if result.in_sample:
        screen.print("note: this is the log the model was trained on; its scores are optimistic")
    print_frame(screen, f"ranking per arm ({result.outcome} uplift)", result.by_arm)
    screen.print(qini_caption(result.by_arm), soft_wrap=True, markup=False, highlight=False)
    print_frame(screen, "calibration by decile", result.calibration_summary)
    screen.print(calibration_sentence(result.calibration_summary), markup=False, highlight=False)
    policies = result.policies
    shown = policies[policies["estimator"].isin(["ipw", "dr"])][
        ["policy", "estimator", "value", "ci_lower", "ci_upper", "diff", "treated_share"]
    ]
    print_frame(screen, f"policy value per order ({result.policy_outcome}, net of costs)", shown)
    print_frame(screen, f"model policy minus {result.best_single_arm}", result.versus_best_arm)
    segments = result.segments
    found = segments["note"] == ""
    print_frame(
        screen,
        "where each arm helps most and where it harms",
        segments[found].drop(columns="note"),
    )
    for row in segments[~found].itertuples(index=False):
        screen.print(f"{row.arm} {row.direction} in no segment: {row.note}", markup=False)
    rules = result.rules[["arm", "rule", "orders", "share", "fidelity", "mean_effect"]]
    print_frame(screen, "why the model picks each arm (policy tree)", rules)
    if risk is not None:
        _print_risk(screen, risk)
    elif truth_path is not None:
        screen.print("note: this model has no risk model, so --truth has nothing to check")
    if json_path is not None:
        payload = result.to_dict()
        payload["risk"] = risk.to_dict() if risk is not None else None
        write_json(payload, json_path)


def _print_risk(screen: Console, risk: RiskCheck) -> None:
    """The risk's calibration on the control orders, the causes, and the check against truth."""
    print_frame(screen, "risk: the control orders by predicted risk", risk.reliability)
    screen.print(
        f"risk calibration error {risk.ece:.4f}: the mean gap between predicted risk and the "
        "cancellation rate of the control orders (no action) with that risk",
        markup=False,
    )
    print_frame(screen, "where the risk comes from (cause of each order)", risk.causes)
    if risk.truth_ece is not None:
        screen.print(
            f"against the truth: risk calibration error {risk.truth_ece:.4f}; the cause is the "
            f"true cause for {risk.agreement_above_median:.1%} of the orders above the median "
            f"risk ({risk.agreement_all:.1%} of all)",
            markup=False,
        )
