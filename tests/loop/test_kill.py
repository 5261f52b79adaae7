"""Killed at any moment, then run again: the same store, model and queue, and no leftovers.

Each command of the loop (ingest, weekly, train, rank --out) runs once undisturbed in one
folder, for reference. In a second folder each is started and killed with SIGKILL at three
points of its reference duration (early, middle, late), then run to the end. Both folders must
then hold the same store (timestamps aside), the same model files and the same queue, and the
killed folder no temporary file.

``UPLIFT_KILL_ORDERS`` sets the size (default 1,000,000 orders, the size the promise is made
for; the whole test takes four to six minutes on two cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from uplift.data.files import write_table
from uplift.data.simulate import pending_orders, simulate
from uplift.loop.store import Store
from uplift.models import load_model, model_digest

pytestmark = pytest.mark.slow

ORDERS = int(os.environ.get("UPLIFT_KILL_ORDERS", "1000000"))
#: Where in a command's reference duration the kills land.
KILL_POINTS = (0.15, 0.45, 0.75)
CAPACITY = ("--capacity", "agent_call=4000", "--capacity", "expedite=3000")
COMMANDS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest", "week.parquet", "--store", "uplift.duckdb"),
    "weekly": (
        "weekly",
        "--store",
        "uplift.duckdb",
        "--out",
        "reports",
        "--pending",
        "pending.parquet",
        *CAPACITY,
    ),
    "train": ("train", "week.parquet", "--model-dir", "model", "--learner", "t_lgbm"),
    "rank": (
        "rank",
        "pending.parquet",
        "--model-dir",
        "model",
        "--out",
        "queue.parquet",
        *CAPACITY,
    ),
}
#: Columns that say when something was written, not what.
TIMESTAMPS = {"created_at", "ingested_at", "saved_at", "imported_at"}


def environment(folder: Path) -> dict[str, str]:
    """The command's environment: keys and configuration inside the test's folder."""
    return {**os.environ, "XDG_CONFIG_HOME": str(folder / "config"), "UPLIFT_DEBUG": ""}


def start(folder: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uplift", *COMMANDS[name]],
        cwd=folder,
        env=environment(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill reaches every thread and child
    )


def run(folder: Path, name: str) -> float:
    """Run a command to its end; its duration in seconds."""
    began = time.monotonic()
    with start(folder, name) as process:
        _, err = process.communicate(timeout=900)
    assert process.returncode == 0, f"{name}: {err.decode()}"
    return time.monotonic() - began


def kill_after(folder: Path, name: str, seconds: float) -> None:
    with start(folder, name) as process:
        try:
            process.wait(timeout=seconds)  # it may finish before the kill: that is a point too
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def prepare(folder: Path, log: pd.DataFrame, pending: pd.DataFrame) -> None:
    folder.mkdir()
    write_table(log, folder / "week.parquet")
    write_table(pending, folder / "pending.parquet")


def store_contents(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of the store, without write times, sorted by every column."""
    store = Store(folder / "uplift.duckdb")
    with store.connect(read_only=True) as con:
        names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        tables = {name: con.execute(f'SELECT * FROM "{name}"').df() for name in names}
    contents = {}
    for name, table in tables.items():
        table = table.drop(columns=[c for c in table.columns if c in TIMESTAMPS])
        if "card" in table.columns:  # the model card says when it was written, too
            table["card"] = table["card"].map(_without_time)
        if "digest" in table.columns:  # a hash of the card, so of its time: check, then drop
            for path, digest in zip(table["path"], table.pop("digest"), strict=True):
                assert model_digest(folder / path) == digest
        contents[name] = table.sort_values(list(table.columns)).reset_index(drop=True)
    return contents


def _without_time(card: str) -> str:
    parsed = json.loads(card)
    parsed.pop("created_at", None)
    return json.dumps(parsed, sort_keys=True)


def boosters(folder: Path) -> dict[str, bytes]:
    """Every tree file of every model folder (model.json and the card also hold fit times)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*.lgbm.txt"))
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders a killed writer could leave."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".wal")) or ".old-" in p.name or p.name.startswith(".")
    )


def test_killed_commands_rerun_to_the_same_state(tmp_path: Path) -> None:
    world = simulate(ORDERS, weeks=1, seed=1, start_week="2026-W40")
    log = world.log
    pending = pending_orders(log)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    prepare(reference, log, pending)
    prepare(killed, log, pending)
    for name in COMMANDS:
        duration = run(reference, name)
        for point in KILL_POINTS:
            kill_after(killed, name, point * duration)
        run(killed, name)

    assert leftovers(killed) == []
    want, got = store_contents(reference), store_contents(killed)
    assert want.keys() == got.keys()
    for table in want:
        pd.testing.assert_frame_equal(got[table], want[table], obj=table)
    assert len(got["experiment_log"]) == ORDERS
    trees = boosters(killed)
    assert trees == boosters(reference)
    # The trained T-learner: one booster per arm, and the risk model's; the weekly job's
    # S-learner: one per bag.
    assert sum(name.startswith("model/") for name in trees) == 7
    assert any(name.startswith("model/risk_model") for name in trees)
    assert sum(name.startswith("models/") for name in trees) >= 1
    orders = pending.head(10_000)
    pd.testing.assert_frame_equal(
        load_model(killed / "model").predict_effects(orders).to_frame(),
        load_model(reference / "model").predict_effects(orders).to_frame(),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "queue.parquet"), pd.read_parquet(reference / "queue.parquet")
    )
