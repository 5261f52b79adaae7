"""The embedded store: idempotent ingest, conflicts, schema growth, registry, two writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ColumnMap, ExperimentLog, read_log
from uplift.exceptions import ConfigError, SchemaError, StoreError
from uplift.loop.outcomes import JournalImport, import_journal, read_outcomes
from uplift.loop.store import ModelRecord, Store


def make_log(
    ids: range, *, seed: int = 0, start: str = "2026-01-05", **extra: object
) -> ExperimentLog:
    """A small randomised log of two arms over one week, with two features."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    frame = pd.DataFrame(
        {
            "order_id": list(ids),
            "arm": np.where(np.arange(n) % 2 == 0, "control", "expedite"),
            "cancelled": rng.integers(0, 2, n),
            "order_value": rng.uniform(10, 100, n),
            "assigned_at": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) % 7, unit="D"),
            "basket_size": rng.integers(1, 6, n),
            "channel": rng.choice(["app", "web"], n),
        }
    )
    for name, value in extra.items():
        frame[name] = value
    return ExperimentLog.from_frame(frame, source=f"log-{ids.start}-{ids.stop}")


def count_rows(store: Store, table: str) -> int:
    with store.connect(read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_ingest_round_trips_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(100, 200))
    result = store.ingest(log)
    assert (result.n_rows, result.n_new, result.weeks) == (100, 100, ("2026-W02",))
    back = store.read_log()
    expected = log.frame  # integer ids come back as integers
    got = back.frame[expected.columns].sort_values("order_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got,
        expected.sort_values("order_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert set(back.features) == {"basket_size", "channel"}
    assert store.weeks() == ["2026-W02"]


def test_ingesting_the_same_log_twice_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(50, 150))
    store.ingest(log)
    before = store.log_frame()
    again = store.ingest(log)
    assert again.n_new == 0
    pd.testing.assert_frame_equal(store.log_frame(), before)
    assert count_rows(store, "ingests") == 1


def test_overlapping_log_appends_only_new_orders(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    overlap = make_log(range(0, 150))
    store.ingest(overlap.subset(overlap.frame["order_id"] < 100))
    assert store.ingest(overlap).n_new == 50
    assert count_rows(store, "experiment_log") == 150


def test_conflicting_orders_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    full = make_log(range(0, 200))
    store.ingest(full.subset(full.frame["order_id"] < 100))
    frame = full.frame.copy()
    flipped = frame["order_id"].isin([3, 7])
    frame.loc[flipped, "arm"] = np.where(
        frame.loc[flipped, "arm"] == "control", "expedite", "control"
    )
    bad = ExperimentLog.from_frame(frame, source="bad.csv")
    with pytest.raises(StoreError, match=r"bad\.csv: 2 row\(s\): 3, 7 are already stored"):
        store.ingest(bad)
    # The 100 new orders of the rejected log (ids 100..199) were not written either.
    assert count_rows(store, "experiment_log") == 100


def test_a_changed_outcome_is_a_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(0, 100))
    store.ingest(log)
    frame = log.frame.copy()
    frame.loc[frame["order_id"] == 5, "retained"] = (
        1 - frame.loc[frame["order_id"] == 5, "retained"]
    )
    frame = frame.drop(columns="revenue")
    with pytest.raises(StoreError, match=r"1 row\(s\): 5 are already stored"):
        store.ingest(ExperimentLog.from_frame(frame, source="changed.csv"))


def test_new_feature_adds_a_column_and_a_type_change_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(0, 100)))
    store.ingest(make_log(range(100, 200), start="2026-01-12", device=["ios", "android"] * 50))
    assert store.weeks() == ["2026-W02", "2026-W03"]
    assert "device" not in store.read_log(["2026-W02"]).features
    assert "device" in store.read_log(["2026-W03"]).features
    clash = make_log(range(200, 300), start="2026-01-19").frame.assign(
        channel=np.tile([1.0, 2.0], 50)
    )
    with pytest.raises(StoreError, match="feature 'channel' is DOUBLE here but VARCHAR"):
        store.ingest(ExperimentLog.from_frame(clash, source="typed.csv"))


def test_log_without_weeks_needs_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    frame = make_log(range(0, 100)).frame.drop(columns="assigned_at")
    log = ExperimentLog.from_frame(frame, source="noweek.csv")
    with pytest.raises(SchemaError, match=r"noweek\.csv: no assigned_at column.*--week"):
        store.ingest(log)
    assert store.ingest(log, week="2026-W09").weeks == ("2026-W09",)


def test_other_control_arm_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(0, 100)))
    frame = make_log(range(100, 200)).frame.replace({"arm": {"control": "none"}})
    other = ExperimentLog.from_frame(frame, control="none", source="other.csv")
    with pytest.raises(StoreError, match="control arm is 'control' but this log's is 'none'"):
        store.ingest(other)


def test_reading_a_missing_store_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "absent.duckdb")
    with pytest.raises(StoreError, match=r"absent\.duckdb: no store here"):
        store.read_log()
    assert store.weeks() == []
    assert store.champion() is None


def test_champion_is_the_latest_promotion_before_a_week(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    first = ModelRecord(
        "m1", "2026-W02", "t_lgbm", "m/m1", {"features": ["a"]}, 1.0, 0.1, "2026-W02"
    )
    second = ModelRecord("m2", "2026-W03", "t_lgbm", "m/m2", {}, 0.9, 0.1, None)
    third = ModelRecord("m3", "2026-W04", "t_lgbm", "m/m3", {}, 1.2, 0.1, "2026-W04")
    assert store.champion() is None
    for record in (first, second, third):
        store.register_model(record)
    assert [m.model_id for m in store.models()] == ["m1", "m2", "m3"]
    assert store.models()[0] == first
    assert store.champion() == third
    assert store.champion(before="2026-W04") == first
    assert store.champion(before="2026-W02") is None
    # Registering the same id again replaces the record instead of adding one.
    store.register_model(ModelRecord("m3", "2026-W04", "t_lgbm", "m/m3", {}, 1.3, 0.1, None))
    assert len(store.models()) == 3
    assert store.champion() == first


def test_assignment_and_report_are_replaced_per_week(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    queue = pd.DataFrame(
        {
            "order_id": [1, 2],
            "arm": ["expedite", "control"],
            "rank": [1, 2],
            "net_value": [3.0, 0.0],
            "expected_retained_revenue": [4.0, 0.0],
            "cost": [1.0, 0.0],
            "holdout": [False, True],
            "propensity": [0.9, 0.1],
            "reason": ["top net value", "holdout"],
        }
    )
    store.save_assignment("2026-W03", "m1", queue)
    store.save_assignment("2026-W03", "m1", queue.iloc[:1])
    assert store.assignment("2026-W03")["order_id"].tolist() == ["1"]
    with pytest.raises(SchemaError, match=r"missing column.*reason"):
        store.save_assignment("2026-W03", "m1", queue.drop(columns="reason"))
    store.record_report("2026-W03", "reports/2026-W03/index.html", {"value": 1.5})
    store.record_report("2026-W03", "reports/2026-W03/index.html", {"value": 2.5})
    assert store.reports()["headline"].tolist() == ['{"value": 2.5}']


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from uplift.loop.store import Store
    with Store(sys.argv[1]).connect():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@contextmanager
def hold_lock(path: Path, seconds: float) -> Iterator[None]:
    """Run a process that holds the store open for ``seconds``, from when it has taken it."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield


def test_second_writer_fails_cleanly_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with (
        hold_lock(path, 3),
        pytest.raises(StoreError, match=r"another process has held the store for 0\.5 s"),
    ):
        Store(path, timeout=0.5).ingest(make_log(range(0, 100)))


def test_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with hold_lock(path, 1.0):
        started = time.monotonic()
        Store(path, timeout=30).ingest(make_log(range(0, 100)))
        # The holder sleeps 1 s after taking the lock; the ingest could only start after that.
        assert time.monotonic() - started > 0.5
    assert count_rows(Store(path), "experiment_log") == 100


INGEST = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from uplift.data.log import read_log
    from uplift.loop.store import Store
    Store(sys.argv[1], timeout=60).ingest(read_log(sys.argv[2]))
    """
)


def test_two_processes_ingesting_at_once_both_land(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    files = []
    for i, ids in enumerate((range(0, 3000), range(3000, 6000))):
        file = tmp_path / f"week{i}.parquet"
        make_log(ids, seed=i).frame.to_parquet(file)
        files.append(file)
    procs = [
        subprocess.Popen([sys.executable, "-c", INGEST, str(path), str(f)], stderr=subprocess.PIPE)
        for f in files
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert count_rows(Store(path), "experiment_log") == 6000
    assert count_rows(Store(path), "ingests") == 2


# ------------------------------------------------------------------ hostile and careless input

INJECTION = 'x" VARCHAR; COMMIT; CREATE TABLE pwned (a INT); --'


def tables(store: Store) -> set[str]:
    with store.connect(read_only=True) as con:
        return {row[0] for row in con.execute("SHOW TABLES").fetchall()}


def test_a_hostile_header_is_stored_as_a_name_and_runs_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(0, 100)))
    values = np.arange(100) * 0.5
    store.ingest(make_log(range(100, 200), **{INJECTION: values}))
    assert "pwned" not in tables(store)
    back = store.read_log()
    assert INJECTION in back.features
    assert back.frame[INJECTION].dropna().tolist() == values.tolist()


def test_a_hostile_duckdb_table_name_is_read_as_a_name(tmp_path: Path) -> None:
    path = tmp_path / "logs.duckdb"
    name = 'weird"; DROP TABLE other; --'
    with duckdb.connect(str(path)) as con:
        con.register("rows", make_log(range(100)).frame)
        con.execute(f'CREATE TABLE "{name.replace(chr(34), chr(34) * 2)}" AS SELECT * FROM rows')
        con.execute("CREATE TABLE other (a INT)")
    assert len(read_log(path, table=name)) == 100
    with duckdb.connect(str(path), read_only=True) as con:
        assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} == {name, "other"}


def test_ids_read_as_floats_are_the_same_orders(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(1, 101))
    store.ingest(log)
    as_floats = log.frame.assign(order_id=log.frame["order_id"].astype(float))
    again = store.ingest(ExperimentLog.from_frame(as_floats, source="floats"))
    assert again.n_new == 0
    assert count_rows(store, "experiment_log") == 100


def test_text_ids_into_an_integer_store_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(1, 101)))
    before = store.log_frame()
    text = make_log(range(101, 201)).frame
    text["order_id"] = [f"{i:05d}" for i in text["order_id"]]
    with pytest.raises(StoreError, match=r"order ids are integers but this log's are texts"):
        store.ingest(ExperimentLog.from_frame(text, source="text"))
    pd.testing.assert_frame_equal(store.log_frame(), before)


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("order_value", lambda s: s + 1.0),
        ("propensity", lambda s: s * 0.5),
        ("assigned_at", lambda s: s + pd.Timedelta(days=7)),
        ("basket_size", lambda s: s + 1),
        ("channel", lambda s: s.where(s != "app", "phone")),
    ],
)
def test_a_changed_order_is_a_named_conflict(tmp_path: Path, column: str, change: object) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(100), propensity=0.5)
    store.ingest(log)
    before = store.log_frame()
    edited = log.frame.copy()
    edited.loc[:9, column] = change(edited.loc[:9, column])  # type: ignore[operator]
    with pytest.raises(StoreError, match=rf"already stored with another .*{column}"):
        store.ingest(ExperimentLog.from_frame(edited, source="edited"))
    pd.testing.assert_frame_equal(store.log_frame(), before)


def test_a_float_moved_in_its_last_digits_is_no_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    log = make_log(range(100))
    store.ingest(log)
    nudged = log.frame.assign(order_value=log.frame["order_value"] * (1 + 1e-13))
    assert store.ingest(ExperimentLog.from_frame(nudged, source="nudged")).n_new == 0


def test_a_week_given_twice_differently_is_a_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    frame = make_log(range(100)).frame.drop(columns="assigned_at")
    log = ExperimentLog.from_frame(frame, source="weekless")
    store.ingest(log, week="2026-W02")
    with pytest.raises(StoreError, match=r"already stored with another week"):
        store.ingest(log, week="2026-W03")


def test_a_week_label_that_is_a_path_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(ConfigError, match=r"--week must be an ISO week"):
        store.ingest(make_log(range(100)), week="../../x")
    assert not store.path.exists()


def test_a_refused_first_ingest_leaves_no_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    # A feature named like the store's own week column.
    log = make_log(range(100), week=np.arange(100.0))
    with pytest.raises(SchemaError, match=r"clash with the store's own columns"):
        store.ingest(log)
    assert list(tmp_path.iterdir()) == []


def test_a_feature_differing_in_case_from_a_stored_one_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(100), coupon=np.arange(100.0)))
    with pytest.raises(StoreError, match=r"'Coupon' differs only in case from the stored"):
        store.ingest(make_log(range(100, 200), Coupon=np.arange(100.0)))


def test_cancel_rates_stop_at_the_week_asked_for(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(100), start="2026-01-05"))
    store.ingest(make_log(range(100, 200), start="2026-01-12"))
    assert store.cancel_rates("control", through="2026-W02")["week"].tolist() == ["2026-W02"]
    assert len(store.cancel_rates("control")) == 2


# ------------------------------------------------------------------ the decision service


def test_shadow_prices_of_the_newest_week(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    assert store.prices() == {}
    store.save_prices("2026-W02", {"expedite": 2.5, "agent_call": 0.0})
    store.save_prices("2026-W03", {"expedite": 1.0})
    store.save_prices("2026-W03", {"expedite": 1.5})  # a week run again replaces its prices
    assert store.prices() == {"expedite": 1.5}
    assert store.prices("2026-W02") == {"agent_call": 0.0, "expedite": 2.5}
    with pytest.raises(ConfigError, match=r"finite numbers >= 0; got \{'expedite': -1\.0\}"):
        store.save_prices("2026-W04", {"expedite": -1.0})
    with pytest.raises(ConfigError, match=r"week must be an ISO week"):
        store.save_prices("W4", {"expedite": 1.0})


def journal_line(decision: str, order: object, arm: str, **extra: object) -> str:
    record = {
        "decision_id": decision,
        "order_id": order,
        "week": "2026-W41",
        "arm": arm,
        "propensity": 0.9,
        "model_id": "m1",
        "decided_at": "2026-10-05T10:00:00+00:00",
        "policy_arm": arm,
        "holdout": False,
        "supersedes": None,
        "net_value": 1.0,
        **extra,
    }
    return json.dumps(record) + "\n"


def test_a_journal_imports_once_and_marks_superseded_decisions(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    journal = tmp_path / "journal.jsonl"
    journal.write_text(journal_line("a", 1, "expedite") + journal_line("b", "2", "control"))
    assert store.import_journal(journal) == 2
    assert store.import_journal(journal) == 0
    with journal.open("a") as handle:  # order 1 changed its signals; then a crash mid-line
        handle.write(
            journal_line("c", 1, "control", supersedes="a", decided_at="2026-10-05T11:00:00+00:00")
        )
        handle.write('{"decision_id": "d", "ord')
    assert store.import_journal(journal) == 1
    assert count_rows(store, "decisions") == 3
    served = store.served_decisions().set_index("order_id")
    assert served.loc["1", ["decision_id", "arm"]].tolist() == ["c", "control"]
    assert served.loc["2", "decision_id"] == "b"
    assert served["propensity"].tolist() == [0.9, 0.9]
    assert store.served_decisions(["2026-W40"]).empty
    with store.connect(read_only=True) as con:
        flags = dict(con.execute("SELECT decision_id, superseded FROM decisions").fetchall())
    assert flags == {"a": True, "b": False, "c": False}


def test_a_journal_that_is_not_one_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    journal = tmp_path / "journal.jsonl"
    journal.write_text(journal_line("a", 1, "expedite") + '{"order_id": 3}\n')
    with pytest.raises(SchemaError, match=r"records without decision_id.*1 row\(s\): 2"):
        store.import_journal(journal)
    journal.write_text(journal_line("a", 1, "expedite", propensity=0))
    with pytest.raises(SchemaError, match=r"propensity must be in \(0, 1\]"):
        store.import_journal(journal)
    assert not store.path.exists()  # checked before the store is opened


def test_api_keys_are_stored_as_hashes_and_can_be_revoked(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    assert store.key_name("anything") is None  # no store yet
    key = store.create_key("checkout")
    other = store.create_key("ops")
    assert key != other
    assert len(key) > 40
    assert store.key_name(key) == "checkout"
    assert store.key_name(other) == "ops"
    assert store.key_name(key + "x") is None
    assert store.key_name("") is None
    with pytest.raises(ConfigError, match=r"a live key named 'checkout' exists"):
        store.create_key("checkout")
    with store.connect(read_only=True) as con:
        stored = con.execute("SELECT * FROM api_keys").fetchall()
    assert not any(key in str(value) for row in stored for value in row)
    store.revoke_key("checkout")
    assert store.key_name(key) is None
    with pytest.raises(ConfigError, match=r"no live key named 'checkout'"):
        store.revoke_key("checkout")
    again = store.create_key("checkout")  # a revoked name may be given a new key
    assert store.key_name(again) == "checkout"
    keys = store.keys()
    assert keys.columns.tolist() == ["name", "created", "revoked"]
    assert keys["name"].tolist() == ["checkout", "ops", "checkout"]
    assert keys["revoked"].notna().tolist() == [True, False, False]


@pytest.mark.parametrize("name", ["", "two words", "x" * 65, "'; DROP TABLE api_keys; --"])
def test_a_key_name_that_is_not_a_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(ConfigError, match=r"key name .*: use 1 to 64 letters"):
        store.create_key(name)


def outcomes_file(path: Path, ids: list[int], **extra: object) -> Path:
    """Outcomes of decided orders as a shop reports them: no arm, no propensity, no time."""
    rng = np.random.default_rng(7)
    n = len(ids)
    frame = pd.DataFrame(
        {
            "order_id": ids,
            "cancelled": rng.integers(0, 2, n),
            "order_value": rng.uniform(10, 100, n),
            "basket_size": rng.integers(1, 6, n),
            "channel": rng.choice(["app", "web"], n),
            **extra,
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.mark.filterwarnings("ignore:.*has only:uplift.exceptions.DataWarning")  # few orders
def test_outcomes_without_an_arm_take_their_standing_decision(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(100)))
    journal = tmp_path / "journal.jsonl"
    journal.write_text(
        journal_line("a", 200, "expedite")
        + journal_line("b", 201, "control", holdout=True, propensity=0.1)
        + journal_line("c", 200, "control", supersedes="a", decided_at="2026-10-06T09:30:00Z")
        + journal_line("d", 202, "expedite", propensity=0.85)
    )
    store.import_journal(journal)
    log = read_outcomes(outcomes_file(tmp_path / "kept.csv", [201, 200, 202]), store)
    # 200: the superseding decision's arm and time, not the first's.
    assert log.frame["arm"].tolist() == ["control", "control", "expedite"]
    assert log.frame["propensity"].tolist() == [0.1, 0.9, 0.85]
    assert log.frame["assigned_at"].astype(str).tolist() == [
        "2026-10-05 10:00:00",
        "2026-10-06 09:30:00",
        "2026-10-05 10:00:00",
    ]
    store.ingest(log)
    decided = store.decisions(["2026-W41"]).set_index("order_id").sort_index()
    assert decided["decided_arm"].tolist() == ["control", "control", "expedite"]
    assert decided["holdout"].tolist() == [False, True, False]


def test_outcomes_of_undecided_orders_are_refused_by_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(100)))
    journal = tmp_path / "journal.jsonl"
    journal.write_text(journal_line("a", 200, "expedite"))
    store.import_journal(journal)
    kept = outcomes_file(tmp_path / "kept.csv", [200, 300, 301])
    with pytest.raises(SchemaError, match=r"kept\.csv: no arm column, .* 2 row\(s\): 2, 3;"):
        read_outcomes(kept, store)
    with pytest.raises(SchemaError, match=r"no arm column and no order_id column"):
        read_outcomes(kept, store, column_map=ColumnMap(ignore=("order_id",)))


@pytest.mark.filterwarnings("ignore:.*has only:uplift.exceptions.DataWarning")  # few orders
def test_a_logged_arm_takes_the_served_propensity_where_it_was_decided(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.ingest(make_log(range(100)))
    journal = tmp_path / "journal.jsonl"
    journal.write_text(journal_line("a", 200, "expedite") + journal_line("b", 201, "expedite"))
    store.import_journal(journal)
    # Order 201 was given expedite but the shop logged control (the action was not taken).
    arms = ["expedite", "control", "control", "expedite"]
    log = read_outcomes(
        outcomes_file(
            tmp_path / "kept.csv", [200, 201, 202, 203], arm=arms, assigned_at="2026-10-05"
        ),
        store,
    )
    store.ingest(log)
    with store.connect(read_only=True) as con:
        stored = dict(
            con.execute(
                "SELECT order_id, propensity FROM experiment_log WHERE week = '2026-W41'"
            ).fetchall()
        )
    # 200 was decided expedite with propensity 0.9; the others keep their arm's share (1/2).
    assert stored == {"200": 0.9, "201": 0.5, "202": 0.5, "203": 0.5}


def test_the_service_outranks_the_queue_of_its_week_and_a_later_week_outranks_both(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.duckdb")
    queue = pd.DataFrame(
        {
            "order_id": ["200", "201"],
            "arm": ["expedite", "expedite"],
            "rank": [1, 2],
            "net_value": [1.0, 1.0],
            "expected_retained_revenue": [2.0, 2.0],
            "cost": [1.0, 1.0],
            "holdout": [False, False],
            "propensity": [0.8, 0.8],
            "policy_arm": ["expedite", "expedite"],
            "reason": ["", ""],
        }
    )
    store.save_assignment("2026-W41", "m0", queue)
    store.save_assignment("2026-W42", "m0", queue.iloc[[1]])
    journal = tmp_path / "journal.jsonl"
    journal.write_text(journal_line("a", 200, "control") + journal_line("b", 201, "control"))
    store.import_journal(journal)
    standing = store.standing_decisions(["200", "201", "999"]).set_index("order_id")
    assert standing.loc["200", ["arm", "propensity", "week"]].tolist() == [
        "control",
        0.9,
        "2026-W41",
    ]
    assert standing.loc["201", ["arm", "propensity", "week"]].tolist() == [
        "expedite",
        0.8,
        "2026-W42",
    ]
    assert pd.isna(standing.loc["201", "decided_at"])
    assert "999" not in standing.index


def test_the_journal_beside_the_store_is_imported_and_a_named_one_must_exist(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.duckdb")
    assert import_journal(store) is None  # no service ran: nothing to import
    beside = tmp_path / "serve-journal.jsonl"
    beside.write_text(journal_line("a", 200, "expedite"))
    assert import_journal(store) == JournalImport(beside, 1)
    assert import_journal(store) == JournalImport(beside, 0)
    with pytest.raises(ConfigError, match=r"other\.jsonl: no decision journal here"):
        import_journal(store, tmp_path / "other.jsonl")
