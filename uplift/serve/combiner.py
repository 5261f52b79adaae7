"""Predictions of concurrent engine calls combined into one model call (flat combining)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sized
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from uplift.serve.orders import MAX_BATCH

__all__ = ["Combiner", "Predicted"]

FloatArray = NDArray[np.float64]
#: Net value per order and treatment arm, and risk and cause when the model has them.
Predicted = tuple[FloatArray, FloatArray | None, NDArray[np.object_] | None]

Key = TypeVar("Key")
Rows = TypeVar("Rows", bound=Sized)


class _Ask(Generic[Key, Rows]):
    """One call's rows waiting to be predicted with others'."""

    __slots__ = ("done", "error", "key", "lead", "result", "rows")

    def __init__(self, key: Key, rows: Rows) -> None:
        self.key = key
        self.rows = rows
        self.done = threading.Event()
        self.lead = False
        self.result: Predicted | None = None
        self.error: BaseException | None = None


class Combiner(Generic[Key, Rows]):
    """Predictions of concurrent calls combined into one vectorised call (flat combining).

    A prediction has a fixed cost per call, and Python threads predict one at a time anyway.
    So a call that finds a prediction running queues its rows; when the running one ends, the
    first call queued leads the next round: it predicts every queued call's rows at once (up
    to ``MAX_BATCH``), hands each its part and passes the lead on. Under load a call waits for
    at most one round, and the model is called once per round rather than once per call.

    ``predict(key, rows)`` predicts; calls are combined only with calls of the same ``key``
    (the model they started with), by ``concat``.
    """

    def __init__(
        self,
        predict: Callable[[Key, Rows], Predicted],
        concat: Callable[[list[Rows]], Rows],
    ) -> None:
        self._predict = predict
        self._concat = concat
        self._lock = threading.Lock()
        self._queue: list[_Ask[Key, Rows]] = []
        self._busy = False

    def predict(self, key: Key, rows: Rows) -> Predicted:
        ask = _Ask(key, rows)
        with self._lock:
            self._queue.append(ask)
            ask.lead = not self._busy
            self._busy = True
        if not ask.lead:
            ask.done.wait()
        if ask.lead:  # first in, or handed the lead: predict a round (this call's included)
            self._round()
        if ask.error is not None:
            raise ask.error
        assert ask.result is not None  # a round answers every call it takes
        return ask.result

    def _round(self) -> None:
        with self._lock:
            taken, size = 0, 0
            while taken < len(self._queue) and (
                not taken or size + len(self._queue[taken].rows) <= MAX_BATCH
            ):
                size += len(self._queue[taken].rows)
                taken += 1
            batch, self._queue = self._queue[:taken], self._queue[taken:]
        try:
            groups: dict[int, list[_Ask[Key, Rows]]] = {}
            for ask in batch:  # a reload may have come between two calls
                groups.setdefault(id(ask.key), []).append(ask)
            for asks in groups.values():
                self._answer(asks)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._busy = False
            for ask in batch:
                ask.done.set()

    def _answer(self, asks: list[_Ask[Key, Rows]]) -> None:
        """Predict the calls' rows together; on an error, each alone (so it finds its own)."""
        if len(asks) > 1:
            try:
                value, risk, cause = self._predict(
                    asks[0].key, self._concat([a.rows for a in asks])
                )
            except Exception:  # a bad order fails only its own call, below
                pass
            else:
                start = 0
                for ask in asks:
                    end = start + len(ask.rows)
                    ask.result = (
                        value[start:end],
                        None if risk is None else risk[start:end],
                        None if cause is None else cause[start:end],
                    )
                    start = end
                return
        for ask in asks:
            try:
                ask.result = self._predict(ask.key, ask.rows)
            except Exception as error:
                ask.error = error
