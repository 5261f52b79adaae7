"""The risk model judged on a log: its calibration, its causes, and the check against truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.exceptions import SchemaError
from uplift.models import train_uplift
from uplift.models.risk_check import check_risk


def test_evaluate_checks_the_risk_and_its_cause_against_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uplift_cli: Callable[..., Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (
        ("simulate", "--orders", "30000", "--seed", "3", "--out", "train.parquet"),
        (
            "simulate",
            "--orders",
            "30000",
            "--seed",
            "4",
            "--first-order-id",
            "100000",
            "--out",
            "fresh.parquet",
        ),
        ("train", "train.parquet", "--model-dir", "m", "--learner", "t_lgbm", "--no-validate"),
    ):
        code, _, err = uplift_cli(*args)
        assert code == 0, err
    code, out, err = uplift_cli(
        "evaluate",
        "fresh.parquet",
        "--model-dir",
        "m",
        "--truth",
        "fresh.truth.parquet",
        "--json",
        "evaluation.json",
    )
    assert code == 0, err
    assert "against the truth: risk calibration error" in out
    risk = json.loads(Path("evaluation.json").read_text())["risk"]
    # Measured on these seeds: 0.0055 against the true probabilities and 0.0060 against the
    # control orders' outcomes; the control orders (about 5,000 at an 8.5% rate) pin the level
    # only to about 0.004, so 0.015 is three of those.
    assert risk["truth_ece"] <= 0.015
    assert risk["ece"] <= 0.015
    # Measured 0.658 at 30,000 training orders (the 80% of the benchmark needs 60,000, see
    # benchmarks/results/causes.md); well above the 0.3 a random family would agree.
    assert risk["agreement_above_median"] >= 0.55
    assert {row["cause"] for row in risk["causes"]} >= {"payment", "fulfilment", "confidence"}


def test_the_check_needs_the_truth_of_every_order() -> None:
    log = ExperimentLog.from_frame(simulate(6_000, weeks=1, seed=1).log)
    model = train_uplift(log, learner="t_lgbm")
    other = simulate(200, weeks=1, seed=2, first_order_id=900_000).truth
    with pytest.raises(SchemaError, match=r"no truth for 6,000 of the log's orders"):
        check_risk(model, log, other)
    with pytest.raises(SchemaError, match=r"no column\(s\) true_cause"):
        check_risk(model, log, other.drop(columns="true_cause"))
    check = check_risk(model, log)
    assert check.truth_ece is None
    assert check.causes["orders"].sum() == len(log)
    assert isinstance(check.reliability, pd.DataFrame)
