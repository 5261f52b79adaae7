"""The canonical experiment log: every malformed log of tests/data/bad, mapping, defaults."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from uplift.data.log import MIN_ARM_ROWS, ColumnMap, ExperimentLog, read_log
from uplift.exceptions import ConfigError, DataWarning, SchemaError

BAD = Path(__file__).parent / "bad"
CASES = tomllib.loads((BAD / "cases.toml").read_text())


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "order_id": np.arange(n),
            "arm": rng.choice(["control", "expedite", "agent_call"], n),
            "cancelled": rng.integers(0, 2, n),
            "order_value": rng.lognormal(3, 1, n),
            "payment_state": rng.choice(["confirmed", "pending"], n),
            "dispatch_delay_days": rng.integers(0, 5, n),
        }
    )


def test_corpus_has_at_least_twenty_malformed_logs() -> None:
    assert len(CASES) >= 20
    for case in CASES.values():
        assert case["file"] == "no_such_log.csv" or (BAD / case["file"]).is_file()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_log_raises_its_message(name: str) -> None:
    case = CASES[name]
    with pytest.raises(SchemaError) as raised:
        read_log(BAD / case["file"], column_map=ColumnMap.parse(case.get("map", [])))
    message = str(raised.value)
    assert case["file"] in message  # every message names the file
    for fragment in case["match"]:
        assert re.search(fragment, message), f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("name", ["duplicate_order_id", "control_absent", "ragged_rows"])
def test_bad_log_on_the_command_line_exits_2_with_one_line(
    uplift_cli: Callable[..., Any], name: str
) -> None:
    case = CASES[name]
    result = uplift_cli("validate", BAD / case["file"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in case["match"]:
        assert re.search(fragment, lines[0])


def test_cancelled_becomes_retained_and_revenue_defaults_to_value_times_retained() -> None:
    frame = _frame()
    log = ExperimentLog.from_frame(frame)
    np.testing.assert_array_equal(log.frame["retained"], 1 - frame["cancelled"])
    np.testing.assert_allclose(log.frame["revenue"], frame["order_value"] * log.frame["retained"])
    assert log.arms == ("control", "agent_call", "expedite")
    assert log.treatment_arms == ("agent_call", "expedite")
    assert log.features == ("payment_state", "dispatch_delay_days")
    assert "cancelled" not in log.frame.columns


def test_missing_propensity_is_the_arm_share_and_said_in_the_notes() -> None:
    frame = _frame()
    log = ExperimentLog.from_frame(frame)
    shares = frame["arm"].value_counts(normalize=True)
    np.testing.assert_allclose(log.frame["propensity"], frame["arm"].map(shares))
    assert not log.propensity_given
    assert any("uniform randomisation assumed" in note for note in log.notes)


def test_given_propensity_is_kept() -> None:
    frame = _frame().assign(propensity=0.25)
    log = ExperimentLog.from_frame(frame)
    assert log.propensity_given
    assert (log.frame["propensity"] == 0.25).all()
    assert log.notes == ()


def test_input_frame_is_not_modified() -> None:
    frame = _frame()
    before = frame.copy()
    ExperimentLog.from_frame(frame, column_map=ColumnMap.parse(["order_value=order_value"]))
    pd.testing.assert_frame_equal(frame, before)


def test_column_map_and_ignore() -> None:
    frame = _frame().rename(columns={"arm": "variant", "cancelled": "lost"})
    frame["conversion"] = 0
    mapping = ColumnMap.parse(["arm=variant", "cancelled=lost"], ignore=["conversion"])
    log = ExperimentLog.from_frame(frame, column_map=mapping)
    assert log.frame["arm"].tolist() == frame["variant"].tolist()
    assert "conversion" not in log.features


def test_column_map_rejects_unknown_canonical_names_and_bad_pairs() -> None:
    with pytest.raises(ConfigError, match="unknown canonical column\\(s\\) treatment"):
        ColumnMap.parse(["treatment=segment"])
    with pytest.raises(ConfigError, match="expects canonical=source; got 'arm'"):
        ColumnMap.parse(["arm"])


def test_mapping_onto_an_existing_column_is_refused() -> None:
    frame = _frame().assign(variant="control")
    with pytest.raises(SchemaError, match="column\\(s\\) arm exist already"):
        ExperimentLog.from_frame(frame, column_map=ColumnMap.parse(["arm=variant"]))


def test_continuous_outcome_only_log_is_accepted() -> None:
    frame = _frame().drop(columns=["cancelled", "order_value"]).assign(revenue=3.0)
    log = ExperimentLog.from_frame(frame)
    assert not log.has_retained
    assert log.has_revenue


def test_small_arm_warns() -> None:
    frame = _frame(n=MIN_ARM_ROWS * 6)
    frame.loc[:4, "arm"] = "payment_rescue"
    with pytest.warns(DataWarning, match="arm 'payment_rescue' has only 5 rows"):
        ExperimentLog.from_frame(frame)


def test_dead_features_warn_and_are_left_out() -> None:
    frame = _frame().assign(device="web", coupon=np.nan)
    with pytest.warns(DataWarning) as caught:
        log = ExperimentLog.from_frame(frame)
    messages = " | ".join(str(w.message) for w in caught)
    assert "feature column device is constant ('web')" in messages
    assert "feature column coupon is entirely missing" in messages
    assert "device" not in log.features
    assert "coupon" not in log.features


def test_missing_order_id_falls_back_to_row_numbers_with_a_warning() -> None:
    frame = _frame().drop(columns="order_id")
    with pytest.warns(DataWarning, match="row numbers are used as order ids"):
        log = ExperimentLog.from_frame(frame)
    assert log.frame["order_id"].tolist() == list(range(1, len(frame) + 1))


def test_parquet_and_duckdb_read_the_same_log(tmp_path: Path) -> None:
    frame = _frame().assign(assigned_at=pd.Timestamp("2026-10-05 09:30"))
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    with duckdb.connect(str(tmp_path / "log.duckdb")) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE experiment_log AS SELECT * FROM frame")
    logs = [read_log(tmp_path / name) for name in ("log.csv", "log.parquet", "log.duckdb")]
    for log in logs[1:]:
        pd.testing.assert_frame_equal(log.frame, logs[0].frame, check_dtype=False)
    assert logs[0].weeks().unique().tolist() == ["2026-W41"]


def test_duckdb_without_the_table_names_the_tables_present(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "store.duckdb")) as con:
        con.execute("CREATE TABLE orders (x INTEGER)")
    with pytest.raises(SchemaError, match="no table 'experiment_log'; tables present: orders"):
        read_log(tmp_path / "store.duckdb")


def test_subset_keeps_control_and_features() -> None:
    log = ExperimentLog.from_frame(_frame())
    part = log.subset(log.frame["arm"] != "agent_call")
    assert part.control == "control"
    assert part.features == log.features
    assert set(part.frame["arm"]) == {"control", "expedite"}


def test_summary_has_one_row_per_arm_in_arm_order() -> None:
    log = ExperimentLog.from_frame(_frame())
    summary = log.summary()
    assert summary["arm"].tolist() == list(log.arms)
    assert summary["orders"].sum() == len(log)
    assert summary["share"].sum() == pytest.approx(1.0)
