"""The thread a command runs its order-free work in (`uplift.cli.models.background`): all its
work done when the command succeeds; on a failure, the work not yet started is dropped, so the
error is said without waiting for it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

from uplift.cli.models import background


def test_without_a_failure_all_the_threads_work_is_done() -> None:
    done: list[int] = []
    with background() as pool:
        for piece in range(3):
            pool.submit(done.append, piece)
    assert done == [0, 1, 2]


def test_a_failure_drops_the_work_still_queued_in_the_thread() -> None:
    ready, running, done = threading.Event(), threading.Event(), []
    queued: list[Future[None]] = []

    def first() -> None:
        # Runs until the queued piece is cancelled (at most 10 s), so that the failure below
        # happens while the thread is busy and the second piece waits in the queue.
        ready.wait(10)
        running.set()
        deadline = time.monotonic() + 10
        while not queued[0].cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)

    def command() -> None:
        with background() as pool:
            pool.submit(first)
            queued.append(pool.submit(done.append, "queued"))
            ready.set()
            running.wait(10)
            raise ValueError("the command failed")

    with pytest.raises(ValueError, match="the command failed"):
        command()
    assert queued[0].cancelled()
    assert done == []
