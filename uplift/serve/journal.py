"""The decision journal: an append-only JSON-lines file, durable before a decision is returned.

Every decision the service gives is one JSON object on one line. :meth:`Journal.append`
returns only once its lines are written and ``fsync``'ed, so a decision a client received
survives a crash of the process or the machine. Appends from many threads are group-committed:
they queue, one writer thread writes everything queued and calls ``fsync`` once for the lot,
then wakes every caller whose lines it held (the technique of database write-ahead logs), so
throughput is set by the disk's fsync rate times the batch, not by one fsync per call.

A crash can cut the last line short. :func:`read_journal` leaves such a line out, and opening
the journal truncates it, so the next append starts on a fresh line; any other damage is
refused. One process at a time may hold a journal open for writing (an exclusive lock on the
file, where the platform has ``flock``), so two services never interleave their lines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from uplift.exceptions import SchemaError, StoreError
from uplift.loop.store import read_journal

if sys.platform != "win32":
    import fcntl

__all__ = ["Journal", "read_journal"]

_BLOCK = 1 << 16
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class _Pending:
    """Lines of one append waiting for the writer."""

    __slots__ = ("data", "done", "error")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.done = threading.Event()
        self.error: OSError | None = None


class Journal:
    """An append-only JSON-lines journal at ``path`` (created with its folder if missing).

    Use it as a context manager, or call :meth:`close`. ``fsync=False`` skips the flush to
    disk (for tests of other parts only: a journal without it is not durable).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreError(f"{self.path}: cannot open the journal: {_why(error)}") from None
        try:
            _lock(self._fd, self.path)
            _cut_torn_tail(self._fd)
            if created and fsync:
                _sync_folder(self.path.parent)
        except BaseException:
            os.close(self._fd)
            raise
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._error: OSError | None = None
        self.appends = 0
        self.records = 0
        self.commits = 0
        self._writer = threading.Thread(target=self._run, name="uplift-journal", daemon=True)
        self._writer.start()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append ``records`` (JSON objects) and return once they are on disk.

        A record that is not valid JSON (NaN, infinity, objects JSON cannot hold) is refused
        before anything is written. After a failed write the journal refuses every later
        append: what reached the disk is no longer known, so the process must restart.
        """
        if not records:
            return
        try:
            data = "".join(_ENCODER.encode(r) + "\n" for r in records).encode()
        except (TypeError, ValueError) as error:
            raise SchemaError(f"{self.path}: a record is not valid JSON: {error}") from None
        pending = _Pending(data)
        with self._cond:
            self._check_open()
            self._queue.append(pending)
            self.appends += 1
            self.records += len(records)
            self._cond.notify()
        pending.done.wait()
        if pending.error is not None:
            raise StoreError(
                f"{self.path}: writing the journal failed ({_why(pending.error)}); nothing "
                "after it is known to be on disk: restart the service"
            )

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._writer.join()
        os.close(self._fd)

    @property
    def failed(self) -> bool:
        """Whether a write failed (the journal then refuses appends)."""
        return self._error is not None

    def _check_open(self) -> None:
        if self._error is not None:
            raise StoreError(
                f"{self.path}: an earlier write of the journal failed ({_why(self._error)}); "
                "restart the service"
            )
        if self._closed:
            raise StoreError(f"{self.path}: the journal is closed")

    def _run(self) -> None:
        """The writer: take everything queued, write it, fsync once, wake its callers."""
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            error = None
            if self._error is None:
                try:
                    _write_all(self._fd, b"".join(p.data for p in batch))
                    if self._fsync:
                        os.fsync(self._fd)
                    self.commits += 1
                except OSError as failure:
                    error = failure
                    with self._cond:
                        self._error = failure
            else:
                error = self._error
            for pending in batch:
                pending.error = error
                pending.done.set()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut_torn_tail(fd: int) -> None:
    """Truncate a last line without its newline (a write cut short by a crash)."""
    size = os.lseek(fd, 0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(end - _BLOCK, 0)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
        os.fsync(fd)


def _lock(fd: int, path: Path) -> None:
    """Hold the journal for this process: a second writer would interleave lines."""
    if sys.platform == "win32":
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreError(
            f"{path}: another process has this journal open; run one service per journal"
        ) from None


def _sync_folder(folder: Path) -> None:
    """Make a new file's entry in its folder durable (POSIX; a no-op elsewhere)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(error: OSError) -> str:
    return error.strerror or str(error)
