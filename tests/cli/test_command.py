"""The installed command (``uplift.cli.command``, also ``python -m uplift``) ends its process
without Python's teardown once the command is done: what it printed and wrote is all there, the
exit code is the command's, exit handlers run, and a thread still running is waited for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_a_command_writes_prints_and_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    done = _run(
        sys.executable, "-m", "uplift", "simulate", "--orders", "500", "--out", str(log),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(log) in done.stdout  # the printed summary was flushed before the process ended
    assert len(pd.read_csv(log)) == 500


def test_a_failed_command_keeps_its_exit_code_and_its_one_line(tmp_path: Path) -> None:
    done = _run(
        sys.executable, "-m", "uplift", "predict", str(tmp_path / "missing.parquet"),
        "--model-dir", str(tmp_path / "model"), "--out", str(tmp_path / "effects.parquet"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'model'}: no model_card.json"), line
    assert not (tmp_path / "effects.parquet").exists()


# A handler registered by the program (as logging, tempfile or Spark register theirs), and a
# thread that outlives the command: both must have their say before the process ends.
SCRIPT = """
import atexit, sys, threading, time
atexit.register(lambda: print("exit handler ran", flush=True))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished"))).start()
from uplift.cli import command
sys.argv = ["uplift", "--help"]
command()
"""


def test_exit_handlers_run(tmp_path: Path) -> None:
    done = _run(sys.executable, "-c", SCRIPT, "plain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: uplift" in done.stdout
    assert done.stdout.rstrip().endswith("exit handler ran")


def test_a_running_thread_is_waited_for(tmp_path: Path) -> None:
    done = _run(sys.executable, "-c", SCRIPT, "thread", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "thread finished" in done.stdout
    assert "exit handler ran" in done.stdout
