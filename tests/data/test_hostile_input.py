"""Random hostile logs: every one ends as a valid log or one clear error, and a refused ingest
changes nothing in the store.

Frames are drawn with random column names (quotes, semicolons, SQL, unicode, spaces) and random
values (integers, floats with NaN and infinities, text, booleans, lists, structs, bytes, epochs
in every unit, time stamps with offsets), written as CSV or Parquet, then read, ingested and
passed to the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uplift.data.log import CANONICAL, ExperimentLog, read_log
from uplift.exceptions import UpliftError
from uplift.loop.store import Store

pytestmark = pytest.mark.filterwarnings("ignore::uplift.exceptions.DataWarning")

HOSTILE_NAMES = [
    'x" VARCHAR; COMMIT; CREATE TABLE pwned (a INT); --',
    "'; DROP TABLE experiment_log; --",
    "week",
    "Arm",
    "ingest_id",
    "naïve café ☕",
    " spaced ",
    'a"b',
]
ARMS = ["control", "sms", "call", " sms", "SMS"]
EPOCH_SECONDS = 1_767_225_600  # 2026-01-01


def names() -> st.SearchStrategy[str]:
    text = st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
    )
    return st.one_of(st.sampled_from(HOSTILE_NAMES), text)


def values(n: int) -> st.SearchStrategy[list[Any]]:
    """One column of ``n`` values of a random kind."""
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    scalar = st.one_of(
        st.integers(-(2**40), 2**40),
        floats,
        st.text(max_size=6),
        st.booleans(),
        st.none(),
    )
    epoch = st.sampled_from([1, 1_000, 1_000_000, 1_000_000_000]).flatmap(
        lambda unit: st.lists(
            st.integers(0, 10**7).map(lambda s: (EPOCH_SECONDS + s) * unit), min_size=n, max_size=n
        )
    )
    stamps = st.lists(
        st.sampled_from(
            ["2026-01-05T01:30:00+02:00", "2026-01-05 09:00", "2026-01-11T23:30:00Z", "soon"]
        ),
        min_size=n,
        max_size=n,
    )
    return st.one_of(
        st.lists(scalar, min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.floats(0, 1), min_size=n, max_size=n),
        st.lists(st.sampled_from(ARMS), min_size=n, max_size=n),
        st.lists(st.lists(st.integers(0, 3), max_size=2), min_size=n, max_size=n),
        st.lists(st.dictionaries(st.sampled_from("ab"), st.integers(0, 3)), min_size=n, max_size=n),
        st.lists(st.binary(max_size=3), min_size=n, max_size=n),
        epoch,
        stamps,
    )


@st.composite
def frames(draw: st.DrawFn, *, core: bool = False) -> pd.DataFrame:
    """A frame that is often almost a log: canonical columns, plausible or hostile values.

    With ``core`` the order ids, arms (control and sms at least) and outcome are plausible, so
    that most frames are logs and the hostile part is in the other columns.
    """
    n = draw(st.integers(2, 40))
    arms = st.lists(st.sampled_from(ARMS[:3]), min_size=n - 2, max_size=n - 2)
    first = draw(st.integers(1, 60))
    plausible: dict[str, st.SearchStrategy[list[Any]]] = {
        "order_id": st.just(list(range(first, first + n))),
        "arm": arms.map(lambda rest: ["control", "sms", *rest]),
        "cancelled": st.lists(st.integers(0, 1), min_size=n, max_size=n),
    }
    columns: dict[str, list[Any]] = {}
    for name in CANONICAL:
        good = plausible.get(name)
        if core and good is not None:
            columns[name] = draw(good)
            continue
        if draw(st.integers(0, 4)) < (4 if core else 1):  # rarer beside a plausible core
            continue
        strategy = values(n) if good is None else st.one_of(good, good, values(n))
        columns[name] = draw(strategy)
    for name in draw(st.lists(names(), max_size=4, unique=True)):
        columns.setdefault(name, draw(values(n)))
    return pd.DataFrame(columns)


def write(frame: pd.DataFrame, folder: Path, suffix: str) -> Path:
    path = folder / f"log{suffix}"
    try:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    except Exception:  # the frame cannot be written in this format: nothing to test
        assume(False)
    return path


def snapshot(store: Store) -> dict[str, pd.DataFrame]:
    """Every table of the store, rows sorted, so two snapshots compare by value."""
    with store.connect(read_only=True) as con:
        names = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        tables = {name: con.execute(f'SELECT * FROM "{name}"').df() for name in names}
    return {
        name: table.sort_values(list(table.columns)[:1]).reset_index(drop=True)
        for name, table in tables.items()
    }


def assert_same(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    assert before.keys() == after.keys()
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding 40 clean orders of week 2026-W02, copied for each example."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(1, 41),
            "arm": np.where(np.arange(40) % 2 == 0, "control", "sms"),
            "cancelled": rng.integers(0, 2, 40),
            "basket": rng.integers(1, 5, 40),
        }
    )
    path = tmp_path_factory.mktemp("store") / "base.duckdb"
    Store(path).ingest(ExperimentLog.from_frame(frame, source="base"), week="2026-W02")
    return path


def read_or_refuse(path: Path) -> ExperimentLog | None:
    """The log, or None after an UpliftError; any other exception fails the test."""
    message = None
    try:
        return read_log(path)
    except UpliftError as error:
        message = str(error)
    assert str(path) in message  # the message names the file
    assert "\n" not in message
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), suffix=st.sampled_from([".csv", ".parquet"]))
def test_read_log_gives_a_log_or_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame, suffix: str
) -> None:
    read_or_refuse(write(frame, tmp_path_factory.mktemp("read"), suffix))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(core=True), suffix=st.sampled_from([".csv", ".parquet"]))
def test_a_refused_ingest_leaves_the_store_unchanged(
    tmp_path_factory: pytest.TempPathFactory, base_store: Path, frame: pd.DataFrame, suffix: str
) -> None:
    folder = tmp_path_factory.mktemp("ingest")
    log = read_or_refuse(write(frame, folder, suffix))
    assume(log is not None)
    assert log is not None
    store = Store(folder / "s.duckdb")
    store.path.write_bytes(base_store.read_bytes())
    before = snapshot(store)
    week = None if log.has_assigned_at else "2026-W02"
    message = None
    try:
        result = store.ingest(log, week=week)
    except UpliftError as error:
        message = str(error)
    if message is not None:
        assert "\n" not in message
        assert_same(before, snapshot(store))
        return
    assert result.n_rows == len(log)
    assert len(snapshot(store)["experiment_log"]) == 40 + result.n_new


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.one_of(frames(), frames(core=True)), suffix=st.sampled_from([".csv", ".parquet"]))
def test_the_command_line_ends_in_a_summary_or_one_error_line(
    uplift_cli: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
    base_store: Path,
    frame: pd.DataFrame,
    suffix: str,
) -> None:
    folder = tmp_path_factory.mktemp("cli")
    path = write(frame, folder, suffix)
    code, _, err = uplift_cli("validate", path)
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: "), err
        return
    store = folder / "s.duckdb"
    store.write_bytes(base_store.read_bytes())
    before = snapshot(Store(store))
    code, _, err = uplift_cli("ingest", path, "--store", store, "--week", "2026-W02")
    assert code in (0, 2), err
    if code == 2:
        errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, err
        assert "Traceback" not in err
        assert_same(before, snapshot(Store(store)))
