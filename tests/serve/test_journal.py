"""The decision journal: durable before return, group-committed, tolerant of a torn last line."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from uplift.exceptions import SchemaError, StoreError
from uplift.serve import journal as journal_module
from uplift.serve.journal import Journal, read_journal


def record(k: int) -> dict[str, Any]:
    return {"decision_id": f"d{k}", "order_id": k, "week": "2026-W41", "arm": "control"}


def test_appends_are_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "journal.jsonl"
    with Journal(path) as journal:
        journal.append([record(1), record(2)])
        journal.append([])
        journal.append([record(3)])
    assert read_journal(path) == [record(1), record(2), record(3)]
    assert path.read_bytes().endswith(b"\n")


def test_an_append_returns_only_after_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    path.touch()  # no new file: every fsync is the journal's
    synced: list[int] = []  # the file's size at every fsync
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.02)  # a disk flush takes time: appends queue behind it
        real_fsync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(journal_module.os, "fsync", slow_fsync)
    failures: list[str] = []
    with Journal(path) as journal:

        def append(k: int) -> None:
            journal.append([record(k)])
            line = (json.dumps(record(k), separators=(",", ":")) + "\n").encode()
            end = path.read_bytes().index(line) + len(line)
            if not synced or synced[-1] < end:
                failures.append(f"record {k} returned before an fsync covered it")

        threads = [threading.Thread(target=append, args=(k,)) for k in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        commits = journal.commits
    assert not failures
    assert sorted(r["order_id"] for r in read_journal(path)) == list(range(64))
    # Group commit: far fewer flushes than appends (one per batch queued behind a flush).
    assert commits < 32
    assert len(synced) == commits


def test_a_torn_last_line_is_skipped_then_cut(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append([record(1), record(2)])
    with path.open("ab") as handle:
        handle.write(b'{"decision_id": "d3", "ord')  # killed in the middle of a write
    assert read_journal(path) == [record(1), record(2)]
    with Journal(path) as journal:  # opening cuts the torn line: the next starts afresh
        journal.append([record(4)])
    assert read_journal(path) == [record(1), record(2), record(4)]


def test_a_complete_line_without_its_newline_counts_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps(record(1)) + "\n" + json.dumps(record(2)))
    assert read_journal(path) == [record(1)]


def test_a_journal_of_only_a_torn_line_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"decision')
    assert read_journal(path) == []
    with Journal(path) as journal:
        journal.append([record(1)])
    assert read_journal(path) == [record(1)]


@pytest.mark.parametrize("damage", [b"not json\n", b"[1, 2]\n", b"\n", b"\xff\xfe\n"])
def test_damage_before_the_last_line_is_refused(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(json.dumps(record(1)).encode() + b"\n" + damage + b'{"a": 1}\n')
    with pytest.raises(SchemaError, match=r"journal\.jsonl: line 2 is not a JSON record"):
        read_journal(path)


def test_a_missing_journal_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"absent\.jsonl: cannot read the journal"):
        read_journal(tmp_path / "absent.jsonl")


def test_a_record_json_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        with pytest.raises(SchemaError, match=r"a record is not valid JSON"):
            journal.append([record(1), {"risk": float("nan")}])
        journal.append([record(2)])
    assert read_journal(path) == [record(2)]


def test_one_writer_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path), pytest.raises(StoreError, match=r"another process has this journal"):
        Journal(path)
    with Journal(path) as journal:  # free again once closed
        journal.append([record(1)])


def test_a_failed_flush_fails_the_append_and_every_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with Journal(path) as journal:
        journal.append([record(1)])
        monkeypatch.setattr(journal_module.os, "fsync", broken)
        with pytest.raises(StoreError, match=r"writing the journal failed \(Input/output error\)"):
            journal.append([record(2)])
        assert journal.failed
        monkeypatch.undo()
        with pytest.raises(StoreError, match=r"an earlier write of the journal failed"):
            journal.append([record(3)])


def test_a_closed_journal_refuses_appends(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.close()
    journal.close()
    with pytest.raises(StoreError, match=r"the journal is closed"):
        journal.append([record(1)])
