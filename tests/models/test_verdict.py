"""The verdict on a model's policy: its numbers, its words, and its place in `uplift evaluate`.

The numbers are checked against the evaluation's own dr rows and, for the paired intervals,
against the per-order contributions recomputed here; the words on small constructed
evaluations whose intervals lie above, around and below 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog, read_log
from uplift.data.simulate import simulate
from uplift.exceptions import SchemaError
from uplift.experiment.metrics import Z95
from uplift.models.contest import compare_models
from uplift.models.evaluate import Evaluation, evaluate_model
from uplift.models.persist import load_model
from uplift.models.training import train_uplift
from uplift.models.uplift_model import UpliftModel
from uplift.models.verdict import (
    MODEL_POLICY,
    PolicyVerdict,
    calibration_sentence,
    verdict_sentence,
)

COSTS = {"expedite": 2.0, "agent_call": 4.0}


@pytest.fixture(scope="module")
def fitted() -> tuple[UpliftModel, ExperimentLog]:
    train = ExperimentLog.from_frame(simulate(4_000, weeks=2, seed=21).log)
    model = train_uplift(train, learner="s_lgbm", costs=COSTS, validate=False)
    return model, ExperimentLog.from_frame(simulate(4_000, weeks=2, seed=22).log)


@pytest.fixture(scope="module")
def evaluation(fitted: tuple[UpliftModel, ExperimentLog]) -> Evaluation:
    model, log = fitted
    return evaluate_model(model, log)


# -------------------------------------------------------------------------------- numbers


def test_the_verdict_is_the_dr_rows_of_the_evaluation(evaluation: Evaluation) -> None:
    verdict = evaluation.verdict
    dr = evaluation.policies[evaluation.policies["estimator"] == "dr"].set_index("policy")
    model = dr.loc[MODEL_POLICY]
    assert verdict.estimator == "dr"
    assert verdict.policy_outcome == evaluation.policy_outcome == "revenue"
    assert verdict.net_of_costs
    assert (verdict.value, verdict.ci_lower, verdict.ci_upper) == (
        model["value"],
        model["ci_lower"],
        model["ci_upper"],
    )
    # Against treating no one: the model's value minus treat-none's.
    none = verdict.versus_none
    assert none.reference == "treat_none"
    assert none.diff == pytest.approx(model["value"] - dr.loc["treat_none", "value"], abs=1e-9)
    assert (none.ci_lower, none.ci_upper) == (model["diff_ci_lower"], model["diff_ci_upper"])
    # Against the best single arm: the treat_all_ policy of highest dr value.
    singles = dr[dr.index.str.startswith("treat_all_")]
    best = str(singles["value"].idxmax())
    assert verdict.best_arm == best.removeprefix("treat_all_")
    against = verdict.versus_best_arm
    assert against.reference == best
    assert against.diff == pytest.approx(model["value"] - singles.loc[best, "value"], abs=1e-9)
    assert against.ci_upper - against.diff == pytest.approx(Z95 * against.diff_se)


def test_the_intervals_are_those_of_the_paired_difference(
    fitted: tuple[UpliftModel, ExperimentLog], evaluation: Evaluation
) -> None:
    # Recomputed from the per-order dr contributions: the difference per order, then its mean
    # and standard error. Pairing removes the order-to-order spread both policies share.
    model, log = fitted
    comparison = compare_models(
        log.frame,
        {MODEL_POLICY: model.predict_effects(log.frame)},
        outcome="revenue",
        mu=model.predict_outcomes(log.frame, "revenue"),
        costs=COSTS,
    )
    own = comparison.contributions(MODEL_POLICY, "dr")
    verdict = evaluation.verdict
    for contrast in (verdict.versus_none, verdict.versus_best_arm):
        per_order = own - comparison.contributions(contrast.reference, "dr")
        se = per_order.std(ddof=1) / np.sqrt(per_order.size)
        assert contrast.diff == pytest.approx(per_order.mean(), rel=1e-9)
        assert contrast.diff_se == pytest.approx(se, rel=1e-9)
        assert contrast.ci_lower == pytest.approx(per_order.mean() - Z95 * se, rel=1e-9)
        unpaired = np.hypot(
            own.std(ddof=1), comparison.contributions(contrast.reference, "dr").std(ddof=1)
        ) / np.sqrt(own.size)
        assert se < unpaired


def test_the_verdict_is_in_the_json_as_numbers(evaluation: Evaluation) -> None:
    verdict = evaluation.to_dict()["verdict"]
    assert verdict == evaluation.verdict.to_dict()
    assert verdict["value"] == evaluation.verdict.value
    assert verdict["versus_treat_none"]["standing"] in {"better", "level", "below"}
    assert verdict["versus_best_arm"]["reference"] == evaluation.best_single_arm
    assert isinstance(verdict["versus_best_arm"]["ci_lower"], float)


# -------------------------------------------------------------------------------- words


def _evaluation(
    none: tuple[float, float, float],
    best: tuple[float, float, float],
    *,
    outcome: str = "revenue",
    costs: dict[str, float] | None = None,
    value: float = 0.412,
) -> Evaluation:
    """An evaluation whose dr rows hold the given (diff, lower, upper); ipw rows are decoys."""
    empty = pd.DataFrame()
    policies = pd.DataFrame(
        [
            {"policy": MODEL_POLICY, "estimator": "ipw", "value": 9.0, "se": 1.0,
             "ci_lower": 7.0, "ci_upper": 11.0, "diff": 9.0, "diff_se": 1.0,
             "diff_ci_lower": 7.0, "diff_ci_upper": 11.0},
            {"policy": MODEL_POLICY, "estimator": "dr", "value": value, "se": 0.01,
             "ci_lower": value - 0.02, "ci_upper": value + 0.02, "diff": none[0],
             "diff_se": (none[2] - none[1]) / (2 * Z95), "diff_ci_lower": none[1],
             "diff_ci_upper": none[2]},
        ]
    )  # fmt: skip
    versus = pd.DataFrame(
        [
            {"estimator": "ipw", "diff": -9.0, "diff_se": 1.0, "diff_ci_lower": -11.0,
             "diff_ci_upper": -7.0},
            {"estimator": "dr", "diff": best[0], "diff_se": (best[2] - best[1]) / (2 * Z95),
             "diff_ci_lower": best[1], "diff_ci_upper": best[2]},
        ]
    )  # fmt: skip
    return Evaluation(
        outcome="retained",
        policy_outcome=outcome,
        by_arm=empty,
        calibration=empty,
        calibration_summary=empty,
        policies=policies,
        versus_best_arm=versus,
        best_single_arm="treat_all_reassurance",
        costs={"reassurance": 0.05} if costs is None else costs,
        in_sample=False,
        segments=empty,
        rules=empty,
    )


def test_the_sentence_has_the_numbers_and_the_currency() -> None:
    result = _evaluation((0.087, 0.051, 0.123), (0.006, -0.010, 0.022))
    assert verdict_sentence(result, currency="EUR") == (
        "The model's policy is worth EUR 0.412 of revenue per order net of costs: "
        "EUR +0.087 (95% CI +0.051 to +0.123) over treating no one, clearly better; "
        "EUR +0.006 (95% CI -0.010 to +0.022) over giving everyone reassurance, level."
    )
    # The verdict object and the evaluation give the same sentence.
    assert verdict_sentence(PolicyVerdict.from_evaluation(result)) == verdict_sentence(result)


@pytest.mark.parametrize(
    ("interval", "words"),
    [
        ((0.05, 0.01, 0.09), "clearly better"),
        ((0.02, -0.01, 0.05), "level"),
        ((0.0, 0.0, 0.0), "level"),  # the model gives every order the best arm
        ((-0.02, -0.05, 0.01), "level"),
        ((-0.05, -0.09, -0.01), "clearly below"),
    ],
)
def test_the_standing_follows_the_interval(
    interval: tuple[float, float, float], words: str
) -> None:
    as_none = verdict_sentence(_evaluation(interval, (0.0, -1.0, 1.0)))
    assert as_none.split(";")[0].endswith(f"over treating no one, {words}")
    as_best = verdict_sentence(_evaluation((0.0, -1.0, 1.0), interval))
    assert as_best.endswith(f"over giving everyone reassurance, {words}.")
    standing = _evaluation(interval, interval).verdict.versus_none.standing
    assert standing == {"clearly better": "better", "level": "level"}.get(words, "below")


def test_currency_only_on_money() -> None:
    money = _evaluation((0.5, 0.2, 0.8), (-0.5, -0.8, -0.2), costs={})
    with_currency = verdict_sentence(money, currency="EUR")
    assert with_currency.startswith("The model's policy is worth EUR 0.41 of revenue per order:")
    assert "net of costs" not in with_currency  # no arm costs anything
    assert with_currency.count("EUR") == 3  # the value and the two differences
    assert "EUR -0.50 (95% CI -0.80 to -0.20)" in with_currency
    assert "EUR" not in verdict_sentence(money)
    rate = _evaluation((0.012, 0.004, 0.020), (0.001, -0.006, 0.008), outcome="retained", value=0.9)
    kept = verdict_sentence(rate, outcome_words="kept orders", currency="EUR")
    assert "EUR" not in kept
    assert kept == (
        "The model's policy is worth 0.9000 kept orders per order: +0.0120 kept orders per order "
        "(95% CI +0.0040 to +0.0200) over treating no one, clearly better; +0.0010 kept orders "
        "per order (95% CI -0.0060 to +0.0080) over giving everyone reassurance, level."
    )
    assert "0.9000 retained orders per order" in verdict_sentence(rate)


def test_a_verdict_needs_the_dr_rows() -> None:
    result = _evaluation((0.1, 0.0, 0.2), (0.1, 0.0, 0.2))
    no_dr = result.versus_best_arm[result.versus_best_arm["estimator"] != "dr"]
    broken = Evaluation(**{**result.__dict__, "versus_best_arm": no_dr})
    with pytest.raises(SchemaError, match=r"one 'dr' row for policy 'model'.*got 1 and 0"):
        verdict_sentence(broken)


def test_calibration_sentence_gives_the_figures() -> None:
    summary = pd.DataFrame({"arm": ["a", "b"], "coverage": [0.6, 0.9], "slope": [0.85, np.nan]})
    text = calibration_sentence(summary)
    assert "(near 95% is good)" in text
    assert "(near 1 is good;" in text
    assert text.endswith("here coverage is 60% to 90% and slope 0.85 across the 2 arms.")
    one = calibration_sentence(summary.iloc[:1].assign(slope=[np.nan]))
    assert one.endswith("here coverage is 60% and slope not measurable for the arm.")


# -------------------------------------------------------------------------------- command line


def test_uplift_evaluate_opens_with_the_verdict(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    simulate(3_000, weeks=2, seed=31).log.to_csv(tmp_path / "train.csv", index=False)
    simulate(3_000, weeks=2, seed=32).log.to_csv(tmp_path / "log.csv", index=False)
    model_dir = tmp_path / "model"
    train = uplift_cli(
        "train", tmp_path / "train.csv", "--model-dir", model_dir, "--learner", "s_lgbm",
        "--no-validate",
    )  # fmt: skip
    assert train.exit_code == 0, train.stderr
    done = uplift_cli(
        "evaluate", tmp_path / "log.csv", "--model-dir", model_dir, "--json", tmp_path / "e.json"
    )
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("s_lgbm model from ")
    expected = evaluate_model(load_model(model_dir), read_log(tmp_path / "log.csv"))
    assert lines[1] == verdict_sentence(expected)
    assert lines[1].startswith("The model's policy is worth ")
    assert json.loads((tmp_path / "e.json").read_text())["verdict"] == expected.verdict.to_dict()
    assert "Coverage is the share of deciles" in done.stdout
    # Every arm and direction has segment rows or a line saying it has none.
    for row in expected.segments[expected.segments["note"] != ""].itertuples():
        assert f"{row.arm} {row.direction} in no segment: no segment of" in done.stdout
