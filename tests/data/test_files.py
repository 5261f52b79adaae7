"""Atomic writes: nothing half-written on failure, ordinary permissions on success."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uplift.data.files import atomic_path, write_json, write_table
from uplift.exceptions import ConfigError


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "queue.csv"
    target.write_text("old\n")

    def write_half_then_fail() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_half_then_fail()
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]


def test_written_files_get_the_umask_mode(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"order_id": [1, 2], "arm": ["control", "a,b"], "value": [1.5, np.nan]})
    path = write_table(frame, tmp_path / f"t{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_unknown_table_suffix_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must end in \.csv or \.parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.xlsx")
    assert not list(tmp_path.iterdir())


def test_json_numbers_stay_unrounded_and_nan_becomes_null(tmp_path: Path) -> None:
    payload = {"x": np.float64(1 / 3), "n": np.int64(7), "missing": float("nan")}
    data = json.loads(write_json(payload, tmp_path / "x.json").read_text())
    assert data == {"x": 1 / 3, "n": 7, "missing": None}
