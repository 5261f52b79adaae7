"""The decision engine of ``uplift serve``: one order's arm, the moment its signals change.

:class:`DecisionEngine` applies the weekly policy to orders as they come, with the store's
champion model, the project's costs and vouchers, live per-arm capacities, and the same holdout
and exploration. It is what the HTTP app calls; it knows nothing of HTTP.

For every order (a dict of ``order_id``, ``order_value`` and the model's features):

1. **Holdout and exploration by hash**, as ``uplift assign`` hashes: ``u = hash_unit(order_id,
   salt)``; ``u < holdout`` keeps the order on control (``holdout``); ``u < holdout +
   explore`` gives it a treatment arm chosen by a second hash (``salt + ":explore"``),
   uniform over the treatment arms (``explore``; control when that arm has no room left).
2. **Policy** for the rest: the arm of largest ``net value - price`` among the arms with room
   left, control when none is above 0. Net value is ``Effects.net_value(costs, vouchers)``,
   as in ``uplift rank``; prices are the pacing prices of :mod:`uplift.serve.pacing` (0 for
   an arm without capacity), so with no capacity the arms are those of ``uplift rank``.
3. **Propensity**, the probability that this procedure gives the order its arm given the
   state it met (for a policy arm ``a``: ``(1 - holdout - explore) + explore / K`` with ``K``
   treatment arms; for control: ``holdout + explore * (arms without room) / K``, plus
   ``1 - holdout - explore`` when the policy chose control). It is exact for one order per
   call; in a batch, arms' room is taken as at the batch's start.
4. **Capacity**: units are counted per arm per period (UTC day or ISO week) and checked and
   taken under one lock, so no arm is ever given beyond its capacity, whatever the threads.
5. **Idempotence** within an ISO week: an order asked again with the same signals (model
   inputs) gets its standing decision back (same ``decision_id``; nothing journaled, no unit
   taken). Changed signals get a new decision that ``supersedes`` the old one, whose unit is
   given back when it was taken in the current period.
6. **Journal**: every new decision is appended to the :class:`~uplift.serve.journal.Journal`
   and on disk before ``decide`` returns. On start the engine replays the current week's
   records, so a restart (even after ``kill -9``) neither counts a unit twice nor decides an
   order again.

The model is swapped atomically by :meth:`DecisionEngine.reload`: a call in flight finishes on
the model it started with (unless the new model's arms differ: then it is scored again).
Calls arriving together are predicted together (:class:`~uplift.serve.combiner.Combiner`): a
prediction has a fixed cost per call, so concurrent single-order calls share it.

The engine's parts: :mod:`uplift.serve.orders` checks a call's orders and builds their inputs,
signatures and hash draws; :mod:`uplift.serve.scoring` predicts net values, risk and cause (for
a few orders through :mod:`uplift.serve.fastpath`); :mod:`uplift.serve.pacing` allocates and
prices the arms; :mod:`uplift.serve.journal` makes the decisions durable.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from uplift.exceptions import SchemaError, StoreError, UpliftError
from uplift.loop.store import Store
from uplift.serve.combiner import Combiner, Predicted
from uplift.serve.journal import Journal, read_journal
from uplift.serve.orders import MAX_BATCH, Batch, OrderInputs, prepare
from uplift.serve.pacing import (
    Pacer,
    allocate,
    elapsed_share,
    iso_week,
    period_key,
    reasons,
)
from uplift.serve.scoring import Deployed, Scores, check_model, deploy, merge, predict
from uplift.serve.settings import ServeSettings

__all__ = ["MAX_BATCH", "RESPONSE_FIELDS", "DecisionEngine", "utc_now"]

IntArray = NDArray[np.int64]
Clock = Callable[[], datetime]

#: Fields of a response, in order.
RESPONSE_FIELDS = (
    "order_id",
    "arm",
    "propensity",
    "net_value",
    "reason",
    "decision_id",
    "model_id",
    "risk",
    "cause",
)


def utc_now() -> datetime:
    """The current time in UTC (the engine's default clock)."""
    return datetime.now(UTC)


class _Commit:
    """The journal write of one call's decisions: others returning them wait for it.

    Once the write is over the commit lets go of its Event: every standing decision of the
    week keeps its commit, and an Event is eight objects for the garbage collector to walk,
    so that a week of single-order calls would make its full passes stall the service.
    """

    __slots__ = ("_pending", "error")

    def __init__(self, durable: bool = False) -> None:
        self._pending: threading.Event | None = None if durable else threading.Event()
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        """The write is over (``error``: it failed): wake those waiting for it."""
        self.error = error  # before the Event goes: a waiter that finds none reads the error
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.set()

    def wait(self) -> None:
        """Return once the write is over (read :attr:`error` then)."""
        pending = self._pending
        if pending is not None:
            pending.wait()


_DURABLE = _Commit(durable=True)


@dataclass(frozen=True, slots=True)
class _Standing:
    """An order's standing decision this week."""

    response: dict[str, Any]
    signature: str
    period: str
    arm: str
    commit: _Commit


# --------------------------------------------------------------------------------------------
# The engine


class DecisionEngine:
    """Decides arms for orders online; thread-safe. Build it with :meth:`from_store`."""

    def __init__(
        self,
        store: Store,
        settings: ServeSettings,
        journal: Journal,
        deployed: Deployed,
        prices: Mapping[str, float],
        *,
        clock: Clock = utc_now,
    ) -> None:
        check_model(deployed, settings)
        self.settings = settings
        self.journal = journal
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._deployed = deployed
        self._stored_prices = dict(prices)
        now = self._now()
        self._week = iso_week(now)
        self._period = period_key(now, settings.capacity_period)
        self._pacer = Pacer(
            deployed.arms,
            settings.capacities,
            prices,
            step=settings.pacing_step,
            lead=settings.pacing_lead,
            share=elapsed_share(now, settings.capacity_period),
        )
        self._standing: dict[str, _Standing] = {}
        self._counts: Counter[str] = Counter()
        self._combiner: Combiner[Deployed, OrderInputs] = Combiner(
            self._predict, OrderInputs.concat
        )
        self._failed: BaseException | None = None
        self._checked = time.monotonic()
        self.reload_error: str | None = None
        self._replay(read_journal(journal.path))

    @classmethod
    def from_store(
        cls,
        store_path: Path,
        settings: ServeSettings,
        journal: Journal,
        *,
        clock: Clock = utc_now,
    ) -> DecisionEngine:
        """The engine of the store's champion model and last weekly shadow prices.

        Raises :class:`StoreError` when the store has no champion (run ``uplift weekly``
        first), :class:`ConfigError` when ``settings`` name arms the model does not know.
        """
        store = Store(store_path)
        record = store.champion()
        if record is None:
            raise StoreError(f"{store.path}: no champion model to serve; run `uplift weekly` first")
        return cls(store, settings, journal, deploy(record, settings), store.prices(), clock=clock)

    # ------------------------------------------------------------------ what the app reads
    @property
    def model_id(self) -> str:
        """The id of the model new calls decide with."""
        return self._deployed.record.model_id

    @property
    def control(self) -> str:
        """The control arm (no action)."""
        return self._deployed.model.control

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm, control first."""
        return (self._deployed.model.control, *self._deployed.arms)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The fields an order needs beside ``order_id``: the model's inputs."""
        return self._deployed.model.inputs

    @property
    def decisions_by_arm(self) -> dict[str, int]:
        """New decisions made by this process per arm (a counter for metrics)."""
        with self._lock:
            return dict(self._counts)

    @property
    def period(self) -> str:
        """The capacity period now counting (``2026-10-05`` or ``2026-W41``)."""
        return self._period

    @property
    def failed(self) -> bool:
        """Whether a journal write failed: the engine then refuses to decide (restart it)."""
        return self._failed is not None

    def capacity_left(self) -> dict[str, int]:
        """Units left in this period per arm with a capacity."""
        with self._lock:
            self._advance(self._now())
            pacer = self._pacer
            return {
                arm: int(max(pacer.capacity[j] - pacer.used[j], 0))
                for j, arm in enumerate(pacer.arms)
                if math.isfinite(pacer.capacity[j])
            }

    def shadow_prices(self) -> dict[str, float]:
        """The pacing price of each arm with a capacity."""
        with self._lock:
            pacer = self._pacer
            return {
                arm: float(pacer.prices[j])
                for j, arm in enumerate(pacer.arms)
                if math.isfinite(pacer.capacity[j])
            }

    # ------------------------------------------------------------------ deciding
    def decide(self, orders: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The decision for each order, in order, each on disk in the journal on return.

        Every order is a mapping of ``order_id`` (text or integer), ``order_value`` and the
        model's features (:attr:`inputs`); other fields are ignored. A missing or malformed
        field is a :class:`SchemaError` naming the order's position and the field. Each result
        has ``order_id, arm, propensity, net_value, reason, decision_id, model_id, risk,
        cause`` (risk and cause are None for a model without a risk model).
        """
        self._check_alive()
        deployed = self._deployed
        salt = self.settings.salt
        batch = prepare(orders, deployed.model.inputs, deployed.numeric, salt)
        if not batch.ids:
            return []
        scores = self._score(deployed, batch, self._stale(batch))
        while True:
            with self._lock:
                self._check_alive()
                current = self._deployed
                if current.arms != scores.model.arms:
                    stale, missing = self._stale(batch), None  # a reload changed the arms
                else:
                    now = self._now()
                    self._advance(now)
                    stale = self._stale(batch)
                    missing = np.setdiff1d(stale, scores.rows)
                    if not len(missing):
                        commit = _Commit()
                        records = self._decide(batch, scores.at(stale), commit, now)
                        standing = [self._standing[k] for k in batch.keys]
                        break
            if missing is None:
                batch = prepare(orders, current.model.inputs, current.numeric, salt)
                scores = self._score(current, batch, stale)
            else:
                more = self._score(scores.model, batch, missing)
                scores = merge(scores, more)
        if records:
            self._write(records, commit)
        for entry in standing:
            if entry.commit is not commit:
                self._wait(entry)
        return [dict(entry.response) for entry in standing]

    def _stale(self, batch: Batch) -> IntArray:
        """Positions of the orders without a standing decision for their signals."""
        standing = self._standing
        rows = [
            k
            for k, (key, signature) in enumerate(zip(batch.keys, batch.signatures, strict=True))
            if (entry := standing.get(key)) is None or entry.signature != signature
        ]
        return np.asarray(rows, dtype=np.int64)

    def _score(self, deployed: Deployed, batch: Batch, rows: IntArray) -> Scores:
        """Net values (and risk) of the orders at ``rows``, in one vectorised prediction."""
        if not len(rows):  # every order has its standing decision: nothing to predict
            return Scores.empty(deployed)
        inputs = batch.inputs if len(rows) == len(batch.inputs) else batch.inputs.take(rows)
        try:
            value, risk, cause = self._combiner.predict(deployed, inputs)
        except SchemaError as error:
            raise SchemaError(f"orders: {error}") from None
        return Scores(deployed, rows, value, risk, cause)

    def _predict(self, deployed: Deployed, inputs: OrderInputs) -> Predicted:
        return predict(deployed, inputs, self.settings)

    def _decide(
        self, batch: Batch, scores: Scores, commit: _Commit, now: datetime
    ) -> list[dict[str, Any]]:
        """Decide the orders of ``scores`` under the lock, at ``now``; return their journal
        records."""
        rows = scores.rows
        if not len(rows):
            return []
        settings, pacer = self.settings, self._pacer
        share = elapsed_share(now, settings.capacity_period)
        keys = batch.keys[rows]
        previous = [self._standing.get(key) for key in keys]
        for entry in previous:  # a superseded decision gives its unit back
            if entry is not None and entry.period == self._period and entry.arm in pacer.arms:
                pacer.give_back(entry.arm)
        pacer.observe(scores.value)
        decided = allocate(
            scores.value,
            pacer.prices,
            pacer.room(share),
            batch.hold[rows],
            batch.pick[rows],
            settings.holdout,
            settings.explore,
        )
        pacer.take(np.bincount(decided.arm, minlength=len(pacer.arms) + 1)[1:].astype(float))
        pacer.update(share)
        labels = np.array([self.control, *pacer.arms], dtype=object)
        why = reasons(decided, labels, pacer.full())
        model_id = scores.model.record.model_id
        decided_at = now.isoformat()
        ids = _decision_ids(len(rows))
        records = []
        for k, row in enumerate(rows):
            arm = str(labels[decided.arm[k]])
            old = previous[k]
            response = {
                "order_id": batch.ids[row],
                "arm": arm,
                "propensity": float(decided.propensity[k]),
                "net_value": float(decided.net_value[k]),
                "reason": why[k],
                "decision_id": ids[k],
                "model_id": model_id,
                "risk": None if scores.risk is None else _number(scores.risk[k]),
                "cause": None if scores.cause is None else str(scores.cause[k]),
            }
            records.append(
                {
                    **response,
                    "week": self._week,
                    "period": self._period,
                    "decided_at": decided_at,
                    "policy_arm": str(labels[decided.policy[k]]),
                    "holdout": bool(decided.held[k]),
                    "supersedes": None if old is None else old.response["decision_id"],
                    "signature": batch.signatures[row],
                }
            )
            self._standing[keys[k]] = _Standing(
                response, batch.signatures[row], self._period, arm, commit
            )
            self._counts[arm] += 1
        return records

    def _write(self, records: list[dict[str, Any]], commit: _Commit) -> None:
        """Journal the call's records; a failure stops the engine (what is on disk is unknown)."""
        failure = None
        try:
            self.journal.append(records)
        except BaseException as error:
            failure = self._failed = error
            raise
        finally:
            commit.finish(failure)

    def _wait(self, entry: _Standing) -> None:
        """Return another call's decision only once it is on disk."""
        entry.commit.wait()
        if entry.commit.error is not None:
            raise StoreError(
                f"the decision {entry.response['decision_id']} could not be journaled "
                f"({entry.commit.error}); restart the service"
            )

    def _check_alive(self) -> None:
        if self._failed is not None:
            raise StoreError(
                f"{self.journal.path}: a journal write failed ({self._failed}); the engine "
                "refuses to decide until the service restarts and replays the journal"
            )

    # ------------------------------------------------------------------ time and state
    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def _advance(self, now: datetime) -> None:
        """Start a new week (standing decisions forgotten) or period (units reset)."""
        week = iso_week(now)
        if week != self._week:
            self._week = week
            self._standing.clear()
        period = period_key(now, self.settings.capacity_period)
        if period != self._period:
            self._period = period
            self._pacer.new_period(elapsed_share(now, self.settings.capacity_period))

    def _replay(self, records: list[dict[str, Any]]) -> None:
        """Restore this week's standing decisions and this period's units from the journal."""
        week = [r for r in records if r.get("week") == self._week]
        superseded = {r["supersedes"] for r in week if r.get("supersedes")}
        used: Counter[str] = Counter()
        for record in week:
            if record.get("decision_id") in superseded:
                continue  # by id, not by place: concurrent calls may journal out of order
            response = {name: record.get(name) for name in RESPONSE_FIELDS}
            arm = str(record.get("arm"))
            period = str(record.get("period"))
            self._standing[str(record["order_id"])] = _Standing(
                response, str(record.get("signature")), period, arm, _DURABLE
            )
            if period == self._period:
                used[arm] += 1
        self._pacer.restore(used)

    # ------------------------------------------------------------------ a new champion
    def reload(self) -> bool:
        """Switch to the store's champion if it changed; True when it did.

        The new model is loaded and checked before the switch, which is one assignment under
        the lock: calls in flight finish on the model they started with. Newly stored weekly
        prices replace the pacing prices. Raises (and keeps the current model) when the new
        champion cannot be loaded or does not know the configured arms.
        """
        with self._reload_lock:
            record = self._store.champion()
            prices = self._store.prices()
            new_prices = prices if prices != self._stored_prices else None
            if record is None or record.model_id == self.model_id:
                if new_prices is not None:
                    with self._lock:
                        self._pacer = self._pacer.for_arms(
                            self._pacer.arms, self.settings.capacities, new_prices
                        )
                        self._stored_prices = prices
                return False
            deployed = deploy(record, self.settings)
            with self._lock:
                self._pacer = self._pacer.for_arms(
                    deployed.arms, self.settings.capacities, new_prices
                )
                self._stored_prices = prices
                self._deployed = deployed
            return True

    def maybe_reload(self, interval: float = 60.0) -> bool:
        """:meth:`reload` when ``interval`` seconds passed since the last check; True when
        the model changed. Errors (a store busy with the weekly job, a broken new model) keep
        the current model and are kept in :attr:`reload_error`."""
        now = time.monotonic()
        if now - self._checked < interval:
            return False
        self._checked = now
        try:
            changed = self.reload()
        except UpliftError as error:
            self.reload_error = str(error)
            return False
        self.reload_error = None
        return changed


# --------------------------------------------------------------------------------------------
# Helpers


def _decision_ids(n: int) -> list[str]:
    """``n`` random ids of 32 hex digits (128 bits, as a UUID4 has 122)."""
    text = os.urandom(16 * n).hex()
    return [text[32 * k : 32 * (k + 1)] for k in range(n)]


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
