"""A shop's own data on the first try: the whole workflow on Hillstrom from a project file.

Hillstrom's columns are not ours (``segment`` is the arm, ``visit`` the outcome, ``spend`` the
revenue, ``conversion`` another outcome, no order ids); `uplift init` guesses that, the team
adds what a file cannot tell (what an order is worth, the currency, the costs, where the queue
goes), and every command runs from the project file alone, without a column renamed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from uplift.data.project import load_project

PENDING = 3_000


@pytest.mark.filterwarnings("default::uplift.exceptions.DataWarning")  # no order ids: row numbers
def test_the_whole_workflow_on_hillstrom_from_a_project_file(
    hillstrom_here: Path, tmp_path: Path, uplift_cli: Callable[..., Any]
) -> None:
    log = hillstrom_here
    raw = pd.read_csv(log)
    raw.drop(columns=["segment", "visit", "conversion", "spend"]).head(PENDING).to_csv(
        "pending.csv", index=False
    )

    def run(*args: Any) -> str:
        code, out, err = uplift_cli(*args)
        assert code == 0, f"uplift {' '.join(map(str, args))}: {err}"
        return str(out)

    run("init", log)
    project = Path("uplift.toml")
    text = project.read_text()
    text = text.replace("# order_value = 10.0", "order_value = 20.0 #")
    text = text.replace('# currency = "EUR"', 'currency = "USD"')
    text = text.replace("costs = {}", 'costs = { "Mens E-Mail" = 0.1, "Womens E-Mail" = 0.1 }')
    project.write_text(text + '\n[weekly]\nqueue_out = "exports/queue.parquet"\n')
    assert load_project(project).order_value == 20.0

    assert "64,000 orders, 3 arms" in run("validate", log)
    readout = run("readout", log, "--adjust")
    assert "Mens E-Mail" in readout
    assert "conversion" not in readout
    trained = run(
        "train", log, "--model-dir", "model", "--test-share", "0.3", "--learner", "t_lgbm"
    )
    assert "on the 19," in trained
    assert "USD" in trained
    assert "beyond noise" in trained  # the held-out Qini against a random ranking
    evaluated = run("evaluate", log, "--model-dir", "model")
    assert "over treating no one" in evaluated
    assert "random ranking beyond noise" in evaluated
    ranked = run("rank", "pending.csv", "--model-dir", "model", "--out", "queue.csv")
    assert "expected incremental net value USD" in ranked
    assert len(pd.read_csv("queue.csv")) == PENDING
    run("ingest", log, "--week", "2026-W01")
    weekly = run("weekly", "--pending", "pending.csv")
    exported = tmp_path / "exports" / "queue.parquet"
    assert f"written to {exported}" in weekly
    queue = pd.read_parquet(exported)
    assert len(queue) == PENDING
    assert set(queue["arm"]) <= {
        "No E-Mail",
        "Mens E-Mail",
        "Womens E-Mail",
    }


@pytest.mark.filterwarnings("default::uplift.exceptions.DataWarning")
def test_a_post_treatment_column_left_in_is_refused_by_name(
    hillstrom_here: Path, tmp_path: Path, uplift_cli: Callable[..., Any]
) -> None:
    log = hillstrom_here
    mapping = ["--map", "arm=segment", "--map", "retained=visit", "--control", "No E-Mail"]
    mapping += ["--ignore", "spend"]  # the other outcome: conversion is the one forgotten
    for command in (
        ["train", log, "--model-dir", "model", "--learner", "t_lgbm"],
        ["readout", log, "--adjust"],
        ["ingest", log, "--week", "2026-W01"],
    ):
        code, _, err = uplift_cli(*command, *mapping)
        assert code == 2, command
        assert "conversion" in err
        assert "--ignore conversion" in err
        assert "--allow conversion" in err
        assert len(err.strip().splitlines()) <= 2  # the row-number note, then the one error line
    assert not Path("model").exists()
    assert not Path("uplift.duckdb").exists()
    code, _, err = uplift_cli("readout", log, "--adjust", *mapping, "--allow", "conversion")
    assert code == 0, err
