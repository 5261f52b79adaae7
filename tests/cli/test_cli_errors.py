"""One error path for every command, and outputs that never destroy inputs.

Every test runs the real command line in process (the ``uplift_cli`` fixture calls
``uplift.cli.main``), so a function can be patched to fail; the exit code and stderr are what a
user would see.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from uplift.cli.render import print_frame
from uplift.data.files import (
    Output,
    check_name,
    check_outputs,
    remove_stale_temps,
    table_output,
    temp_path,
    write_outputs,
    write_table,
)
from uplift.data.simulate import simulate
from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.design import plan_design
from uplift.policy.ranking import rank_orders


def _one_line_error(err: str) -> str:
    """stderr must be exactly one line, an ``error:`` line, without a traceback."""
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with the bytes of its files (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with orders, a design and an (empty) model folder."""
    monkeypatch.chdir(tmp_path)
    ids = np.arange(1, 41)
    pd.DataFrame({"order_id": ids, "order_value": 50.0 + ids}).to_csv("orders.csv", index=False)
    design = plan_design(
        name="t", treatment_arms=["a"], baseline_cancel_rate=0.1, mde=0.02, daily_orders=500
    )
    design.write(tmp_path / "design.toml")
    (tmp_path / "model").mkdir()
    return tmp_path


# -------------------------------------------------------------------------------- main()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["rank"], "Missing argument 'ORDERS'"),
        (["rank", "orders.csv", "--out", "q.csv", "--holdout", "abc"], "'--holdout'"),
        (["rank", "orders.csv", "--out", "q.csv", "--bogus"], "No such option: --bogus"),
        (["teleport"], "No such command 'teleport'"),
        (["--debug"], "Missing command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    uplift_cli: Callable[..., Any],
    args: list[str],
    expected: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = uplift_cli(*args)
    assert code == 2
    assert expected in _one_line_error(err)
    assert "--help" in err
    assert out == ""


@pytest.mark.parametrize("args", [[], ["--help"], ["rank", "--help"]])
def test_help_exits_0(
    uplift_cli: Callable[..., Any],
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = uplift_cli(*args)
    assert code == 0
    assert "Usage" in out
    assert err == ""


def _crash(*_: object, **__: object) -> None:
    raise RuntimeError("boom in the simulator")


def test_an_unexpected_error_is_one_line_with_exit_1(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("uplift.data.simulate.simulate", _crash)
    code, _, err = uplift_cli(*["simulate", "--out", "log.csv"])
    assert code == 1
    assert "RuntimeError: boom in the simulator" in _one_line_error(err)
    assert "--debug" in err
    assert not (files / "log.csv").exists()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(
    uplift_cli: Callable[..., Any],
    how: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("uplift.data.simulate.simulate", _crash)
    args = ["simulate", "--out", "log.csv"]
    if how == "flag":
        args.insert(0, "--debug")
    else:
        monkeypatch.setenv("UPLIFT_DEBUG", "1")
    code, _, err = uplift_cli(*args)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == "error: RuntimeError: boom in the simulator"


def test_ctrl_c_is_aborted_with_exit_130(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("uplift.data.simulate.simulate", interrupt)
    code, _, err = uplift_cli(*["simulate", "--out", "log.csv"])
    assert code == 130
    assert err == "aborted\n"


def test_an_os_error_names_the_path_with_exit_2(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def denied(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied", "/srv/shared/log.csv")

    monkeypatch.setattr("uplift.data.simulate.simulate", denied)
    code, _, err = uplift_cli(*["simulate", "--out", "log.csv"])
    assert code == 2
    assert _one_line_error(err) == "error: /srv/shared/log.csv: Permission denied\n"


def test_a_folder_given_as_the_input_file_is_one_line(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (files / "folder.csv").mkdir()
    args = ["assign", "folder.csv", "--design", "design.toml", "--out", "a.csv"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "folder.csv" in _one_line_error(err)
    assert not (files / "a.csv").exists()


def test_an_unreadable_input_is_one_line(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Root reads a file whatever its mode, so the refusal is made by the reader itself.
    def refuse(path: object, *_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refuse)
    args = ["assign", "orders.csv", "--design", "design.toml", "--out", "a.csv"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "orders.csv" in _one_line_error(err)
    assert "Permission denied" in err
    assert not (files / "a.csv").exists()


# ------------------------------------------------------------------ outputs never over inputs


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "orders.csv", "--model-dir", "model", "--out", "orders.csv"],
        ["predict", "orders.csv", "--model-dir", "model", "--out", "./orders.csv"],
        ["predict", "orders.csv", "--model-dir", "model", "--out", "model/x.csv"],
        ["predict", "orders.csv", "--model-dir", "model", "--out", "e.csv", "--json", "e.csv"],
        ["rank", "orders.csv", "--model-dir", "model", "--out", "orders.csv"],
        [
            "rank",
            "orders.csv",
            "--model-dir",
            "model",
            "--out",
            "q.csv",
            "--design",
            "design.toml",
            "--json",
            "design.toml",
        ],
        ["assign", "orders.csv", "--design", "design.toml", "--out", "orders.csv"],
        ["assign", "orders.csv", "--design", "design.toml", "--out", "a.csv", "--json", "a.csv"],
        ["simulate", "--orders", "100", "--out", "orders.csv", "--json", "orders.csv"],
        ["validate", "orders.csv", "--json", "orders.csv"],
        ["readout", "orders.csv", "--design", "design.toml", "--json", "design.toml"],
        ["weekly", "--store", "orders.csv", "--out", "orders.csv"],
        ["weekly", "--inbox", "model", "--out", "model/reports"],
    ],
)
def test_an_output_over_an_input_is_refused_and_the_input_kept(
    uplift_cli: Callable[..., Any],
    args: list[str],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _snapshot(files)
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert re.search(r"is (the|inside the) input|are the same file|is a file", _one_line_error(err))
    assert _snapshot(files) == before


def test_a_hard_link_to_the_input_is_the_input(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.link(files / "orders.csv", files / "link.csv")
    before = _snapshot(files)
    args = ["assign", "orders.csv", "--design", "design.toml", "--out", "link.csv"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "is the input ORDERS" in _one_line_error(err)
    assert _snapshot(files) == before


@pytest.mark.parametrize("command", ["assign", "simulate"])
def test_an_output_that_is_a_directory_is_refused(
    uplift_cli: Callable[..., Any],
    command: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (files / "out.csv").mkdir()
    args = {
        "assign": ["assign", "orders.csv", "--design", "design.toml", "--out", "out.csv"],
        "simulate": ["simulate", "--orders", "100", "--out", "out.csv"],
    }[command]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "--out out.csv is a directory" in _one_line_error(err)
    assert list((files / "out.csv").iterdir()) == []


def test_an_output_whose_folder_cannot_be_made_is_refused_before_work(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("uplift.data.simulate.simulate", _crash)  # must not be reached
    args = ["simulate", "--orders", "100", "--out", "log.csv", "--json", "orders.csv/x.json"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "orders.csv is a file" in _one_line_error(err)


def test_a_failed_json_leaves_no_main_output_and_no_temporary_file(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Something in the way of the JSON's temporary file makes its write fail (like a full disk)
    # after the assigned orders were written to theirs.
    blocker = temp_path(files / "x.json")
    blocker.mkdir()
    (blocker / "keep").write_text("")
    before = _snapshot(files)
    args = ["assign", "orders.csv", "--design", "design.toml", "--out", "a.csv"]
    code, _, err = uplift_cli(*[*args, "--json", "x.json"])
    assert code == 2
    assert str(blocker.name) in _one_line_error(err)
    assert _snapshot(files) == before


def test_write_outputs_renames_nothing_when_one_write_fails(tmp_path: Path) -> None:
    def no_space(_: Path) -> None:
        raise OSError(28, "No space left on device")

    first = table_output(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    with pytest.raises(OSError, match="No space left"):
        write_outputs(first, None, Output(tmp_path / "b.csv", no_space))
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_dead_runs_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", ""])
    finished.wait()
    stale = tmp_path / f".q.csv.{finished.pid}.tmp"  # a run that is gone
    live = tmp_path / f".q.csv.{os.getppid()}.tmp"  # our parent: alive
    other = tmp_path / f".other.csv.{finished.pid}.tmp"  # another target's
    for path in (stale, live, other):
        path.write_text("half")
    assert remove_stale_temps(tmp_path / "q.csv") == [stale]
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "q.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "q.csv"])


# -------------------------------------------------------------------------- check_outputs


def test_check_outputs(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "link.csv").symlink_to(data)
    check_outputs({"LOG": data, "--design": None}, {"--out": tmp_path / "new" / "o.csv"})
    with pytest.raises(ConfigError, match="is the input LOG"):
        check_outputs({"LOG": data}, {"--out": tmp_path / "link.csv"})
    with pytest.raises(ConfigError, match=r"--out .* and --json .* are the same file"):
        check_outputs({}, {"--json": tmp_path / "o.json", "--out": tmp_path / "d/../o.json"})
    with pytest.raises(ConfigError, match="is a directory"):
        check_outputs({}, {"--out": tmp_path / "d"})
    with pytest.raises(ConfigError, match="is a file; give a folder"):
        check_outputs({}, {}, {"--out": data})
    with pytest.raises(ConfigError, match="is inside the input --inbox"):
        check_outputs({"--inbox": tmp_path / "d"}, {}, {"--out": tmp_path / "d" / "reports"})


# ------------------------------------------------------------------------------ names, design


@pytest.mark.parametrize("name", ["w45-payment", "a", "A.1_b-2", "x" * 64])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name, "--name") == name


@pytest.mark.parametrize(
    "name", ["../../x", "..", "a/b", ".hidden", "-flag", "", "x" * 65, "a..b", "a b", "a\\b"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="--name"):
        check_name(name, "--name")


def test_design_name_cannot_leave_the_experiments_folder(
    uplift_cli: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["design", "--baseline-cancel-rate", "0.08", "--mde", "0.01", "--arms", "1"]
    args += ["--daily-orders", "100", "--out-dir", "a/b", "--name", "../../x"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert "--name '../../x'" in _one_line_error(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("daily_orders", "expected"),
    [("0.0001", "more than ten years"), ("1e300", "power calculation has no answer")],
)
def test_a_design_that_cannot_be_computed_writes_nothing(
    uplift_cli: Callable[..., Any],
    daily_orders: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["design", "--baseline-cancel-rate", "0.08", "--mde", "0.01", "--arms", "1"]
    args += ["--daily-orders", daily_orders, "--json", "d.json"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    assert expected in _one_line_error(err)
    assert list(tmp_path.rglob("*")) == []


# ------------------------------------------------------------------------ crashes after reading


def test_rank_refuses_repeated_order_ids(
    uplift_cli: Callable[..., Any],
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orders = pd.read_csv(files / "orders.csv")
    pd.concat([orders, orders.iloc[[2]]]).to_csv(files / "dup.csv", index=False)
    args = ["rank", "dup.csv", "--model-dir", "model", "--out", "q.csv"]
    code, _, err = uplift_cli(*args)
    assert code == 2
    message = _one_line_error(err)
    assert "dup.csv: order_id 3 appear(s) more than once, in 2 row(s): 3, 41" in message
    assert not (files / "q.csv").exists()


def test_rank_orders_refuses_repeated_order_ids() -> None:
    effects = pd.DataFrame(
        {"order_id": [7, 8, 7], "retained_uplift_a": 0.1, "revenue_uplift_a": 5.0}
    )
    with pytest.raises(SchemaError, match=r"order_id 7 appear\(s\) more than once, in 2 row"):
        rank_orders(effects)


@pytest.fixture(scope="module")
def log_frame() -> pd.DataFrame:
    return simulate(2000, 1, 1).log


@pytest.mark.parametrize(
    ("column", "extra", "code", "expected"),
    [
        ("order_value", [], 0, "covariate order_value left out of the adjustment"),
        ("order_value", ["--covariate", "order_value"], 2, "covariate 'order_value' has values"),
        ("revenue", [], 2, "column revenue has values beyond"),
    ],
)
def test_readout_adjust_with_a_huge_value(
    uplift_cli: Callable[..., Any],
    column: str,
    extra: list[str],
    code: int,
    expected: str,
    log_frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = log_frame.copy()
    frame.loc[5, column] = 1e300
    frame.to_parquet(tmp_path / "log.parquet")
    args = ["readout", str(tmp_path / "log.parquet"), "--adjust", *extra]
    exit_code, out, err = uplift_cli(*args)
    assert exit_code == code
    if code == 2:
        assert expected in _one_line_error(err)
    else:
        assert expected in out
        assert "in 1 row(s): 6" in out
        assert "inf" not in out
        assert err == ""


def test_a_table_title_with_a_long_path_stays_on_one_line() -> None:
    # Output read by a job or a test must hold "N orders, K arms" together whatever the path.
    buffer = io.StringIO()
    title = "/" + "deep/" * 30 + "log.csv: 64,000 orders, 3 arms"
    print_frame(Console(file=buffer, width=80), title, pd.DataFrame({"arm": ["a"], "n": [1]}))
    assert title in buffer.getvalue().splitlines()
