"""The readout from sums equals the in-memory computation it replaced, and the command line
reads a file without loading it.

The reference is the old path: covariates encoded with pandas and Lin's regression fitted on
every row by statsmodels' WLS with HC1 errors (``reference_lin``). Tolerance 1e-9, relative to
each figure's size (absolute for figures near 0, such as a p-value of 1e-30 or a difference
that crosses 0): the two compute the same statistic in different orders of floating-point
operations (sums of 10^4-10^5 terms, then a small solve, against an SVD of the rows), which
separates them by about 1e-11 on these logs; a wrong sum, weight or degree of freedom moves a
figure by 1e-5 or more (one degree of freedom in HC1's n / (n - k) is 1/n).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from reference_lin import adjusted_effects as reference_adjusted

from uplift.data.log import ExperimentLog
from uplift.data.simulate import simulate
from uplift.experiment import adjustment
from uplift.experiment.covariates import encode_covariates
from uplift.experiment.readout import readout, readout_table
from uplift.experiment.scan import scan_file, table_from_log

TOLERANCE = 1e-9
FIGURES = ["difference", "std_error", "ci_lower", "ci_upper", "p_value", "p_value_adjusted"]


def close(new: Any, old: Any) -> None:
    a, b = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE * 1e-3)


@pytest.fixture(scope="module", params=[(3_000, False, 1), (20_000, True, 2), (8_000, False, 3)])
def log(request: pytest.FixtureRequest) -> ExperimentLog:
    orders, logged, seed = request.param
    return ExperimentLog.from_frame(simulate(orders, weeks=2, seed=seed, logged_policy=logged).log)


def test_adjusted_effects_equal_statsmodels_wls(log: ExperimentLog) -> None:
    result = readout(log, adjust=True)
    plain = readout(log)
    estimate, error, used = reference_adjusted(log, plain.effects, None, alpha=0.05, notes=[])
    assert result.covariates == used
    close(result.effects["difference"], estimate)
    close(result.effects["std_error"], error)
    assert result.adjustment is not None
    close(result.adjustment["std_error_unadjusted"], plain.effects["std_error"])


@pytest.mark.parametrize("budget", [0, 2_000, 10**9], ids=["rows", "some-grouped", "grouped"])
def test_cross_products_grouped_by_indicators_or_not_are_the_same_fit(
    log: ExperimentLog, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many covariates the budget lets the cross-products group rows by (none, the
    covariates of fewest levels, all of them), the fit is statsmodels'."""
    monkeypatch.setattr(adjustment, "MAX_GROUP_SUMS", budget)
    table = table_from_log(log)
    encoded, _ = encode_covariates(table, None, [])
    grouped = adjustment._grouped(encoded, 2)
    indicators = [j for j, e in enumerate(encoded) if e.group is not None]
    assert len(indicators) > 0
    assert len(grouped) == {0: 0, 10**9: len(indicators)}.get(budget, len(grouped))
    if budget == 2_000:
        assert 0 < len(grouped) < len(indicators)
    test_adjusted_effects_equal_statsmodels_wls(log)


def test_named_covariates_equal_statsmodels_wls(log: ExperimentLog) -> None:
    named = ["order_value", "stock_confidence", "device", "hour"]
    result = readout(log, adjust=True, covariates=named)
    plain = readout(log)
    estimate, error, _ = reference_adjusted(log, plain.effects, named, alpha=0.05, notes=[])
    close(result.effects["difference"], estimate)
    close(result.effects["std_error"], error)


def test_the_file_reads_out_as_the_log_in_memory(log: ExperimentLog, tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    simulate_frame = log.frame.copy()
    simulate_frame.to_parquet(path)
    table = scan_file(path)
    assert table is not None  # a clean log is read where it lies
    assert table.features == log.features
    for options in ({}, {"adjust": True}, {"segment": "payment_status"}):
        new = readout_table(table, **options)  # type: ignore[arg-type]
        old = readout(log, **options)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(new.arms, old.arms, rtol=TOLERANCE)
        for figure in FIGURES:
            close(new.effects[figure], old.effects[figure])
        if new.segments is not None:
            assert old.segments is not None
            assert list(new.segments["segment"]) == list(old.segments["segment"])
            for figure in FIGURES:
                close(new.segments[figure], old.segments[figure])
        assert new.notes == old.notes


def test_a_bad_file_is_left_to_the_reader(tmp_path: Path) -> None:
    frame = simulate(2_000, weeks=1, seed=4).log
    frame.loc[[3, 9], "propensity"] = 0.0
    frame.to_parquet(tmp_path / "bad.parquet")
    assert scan_file(tmp_path / "bad.parquet") is None
    frame = simulate(2_000, weeks=1, seed=4).log
    frame.loc[5, "order_id"] = frame.loc[6, "order_id"]
    frame.to_csv(tmp_path / "dup.csv", index=False)
    assert scan_file(tmp_path / "dup.csv") is None


def test_a_log_without_propensities_or_ids_reads_as_in_memory(tmp_path: Path) -> None:
    frame = simulate(4_000, weeks=1, seed=6).log.drop(columns=["propensity", "order_id"])
    frame.to_csv(tmp_path / "log.csv", index=False)
    with pytest.warns(UserWarning, match="no order_id column"):
        table = scan_file(tmp_path / "log.csv")
    with pytest.warns(UserWarning, match="no order_id column"):
        log = ExperimentLog.from_frame(
            pd.read_csv(tmp_path / "log.csv"), source=str(tmp_path / "log.csv")
        )
    assert table is not None
    new, old = readout_table(table, adjust=True), readout(log, adjust=True)
    for figure in FIGURES:
        close(new.effects[figure], old.effects[figure])
    assert new.notes == old.notes
    assert readout_table(table_from_log(log)).notes == readout(log).notes


def test_cli_reads_out_a_parquet_file(uplift_cli: Callable[..., Any], tmp_path: Path) -> None:
    frame = simulate(3_000, weeks=1, seed=8).log
    frame.to_parquet(tmp_path / "log.parquet")
    out = tmp_path / "r.json"
    result = uplift_cli("readout", tmp_path / "log.parquet", "--adjust", "--json", out)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    old = readout(
        ExperimentLog.from_frame(frame, source=str(tmp_path / "log.parquet")), adjust=True
    )
    close([e["difference"] for e in figures["effects"]], old.effects["difference"])
    close([e["std_error"] for e in figures["effects"]], old.effects["std_error"])


def test_cli_bad_values_are_one_line_naming_the_rows(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    frame = simulate(3_000, weeks=1, seed=8).log
    frame.loc[[4, 7], "propensity"] = 1.5
    frame.to_parquet(tmp_path / "log.parquet")
    code, _, err = uplift_cli("readout", tmp_path / "log.parquet", "--adjust")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "column propensity must lie in (0, 1]" in err
    assert "2 row(s): 5, 8" in err


def test_cli_engine_is_checked(uplift_cli: Callable[..., Any], tmp_path: Path) -> None:
    code, _, err = uplift_cli("readout", tmp_path / "log.parquet", "--engine", "pandas")
    assert code == 2
    assert "--engine must be one of" in err
