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
Calls arriving together are predicted together (:class:`_Combiner`): a prediction costs about
as much for one order as for a hundred, so concurrent single-order calls share it.
"""

from __future__ import annotations

import hashlib
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
import pandas as pd
from numpy.typing import NDArray

from uplift.exceptions import ConfigError, SchemaError, StoreError, UpliftError
from uplift.loop.store import ModelRecord, Store
from uplift.loop.weekly import load_registered
from uplift.models.base import FeatureEncoder
from uplift.models.uplift_model import UpliftModel
from uplift.serve.journal import Journal, read_journal
from uplift.serve.pacing import (
    Pacer,
    allocate,
    elapsed_share,
    iso_week,
    period_key,
    reasons,
)
from uplift.serve.settings import ServeSettings

__all__ = ["MAX_BATCH", "DecisionEngine", "utc_now"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Clock = Callable[[], datetime]

#: Orders per call, all predicted in one vectorised pass.
MAX_BATCH = 10_000
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
_EXPLORE_SALT = ":explore"
# 13 hex digits = 52 bits, as uplift.experiment.assignment.hash_unit.
_HASH_HEX_DIGITS = 13


def utc_now() -> datetime:
    """The current time in UTC (the engine's default clock)."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# What the engine holds


@dataclass(frozen=True, eq=False)
class _Deployed:
    """A loaded champion: its record, the model, and which inputs it reads as numbers."""

    record: ModelRecord
    model: UpliftModel
    numeric: frozenset[str] | None

    @property
    def arms(self) -> tuple[str, ...]:
        return self.model.treatment_arms


class _Commit:
    """The journal write of one call's decisions: others returning them wait for it."""

    __slots__ = ("done", "error")

    def __init__(self, durable: bool = False) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        if durable:
            self.done.set()


_DURABLE = _Commit(durable=True)


@dataclass(frozen=True, slots=True)
class _Standing:
    """An order's standing decision this week."""

    response: dict[str, Any]
    signature: str
    period: str
    arm: str
    commit: _Commit


@dataclass(frozen=True, eq=False)
class _Batch:
    """One call's orders, validated: ids, model inputs, signal signatures and hash draws."""

    ids: list[Any]
    keys: NDArray[np.object_]
    frame: pd.DataFrame
    signatures: NDArray[np.object_]
    hold: FloatArray
    pick: FloatArray


@dataclass(frozen=True, eq=False)
class _Scores:
    """Predictions for some rows of a batch (positions ``rows``)."""

    model: _Deployed
    rows: IntArray
    value: FloatArray
    risk: FloatArray | None
    cause: NDArray[np.object_] | None

    def at(self, rows: IntArray) -> _Scores:
        """The scores of ``rows`` (positions in the batch, all scored), in that order."""
        where = pd.Index(self.rows).get_indexer(pd.Index(rows))
        return _Scores(
            self.model,
            rows,
            self.value[where],
            None if self.risk is None else self.risk[where],
            None if self.cause is None else self.cause[where],
        )


_Predicted = tuple[FloatArray, FloatArray | None, NDArray[np.object_] | None]


class _Ask:
    """One call's orders waiting to be predicted with others'."""

    __slots__ = ("deployed", "done", "error", "frame", "lead", "result")

    def __init__(self, deployed: _Deployed, frame: pd.DataFrame) -> None:
        self.deployed = deployed
        self.frame = frame
        self.done = threading.Event()
        self.lead = False
        self.result: _Predicted | None = None
        self.error: BaseException | None = None


class _Combiner:
    """Predictions of concurrent calls combined into one vectorised call (flat combining).

    A prediction costs about the same for one order as for a hundred (a fixed cost per call
    of pandas and the model), and Python threads predict one at a time anyway. So a call that
    finds a prediction running queues its orders; when the running one ends, the first call
    queued leads the next round: it predicts every queued call's orders at once (up to
    ``MAX_BATCH``), hands each its rows and passes the lead on. Under load a call waits for at
    most one round, and the model is called once per round rather than once per call.
    """

    def __init__(self, predict: Callable[[_Deployed, pd.DataFrame], _Predicted]) -> None:
        self._predict = predict
        self._lock = threading.Lock()
        self._queue: list[_Ask] = []
        self._busy = False

    def predict(self, deployed: _Deployed, frame: pd.DataFrame) -> _Predicted:
        ask = _Ask(deployed, frame)
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
            taken, rows = 0, 0
            while taken < len(self._queue) and (
                not taken or rows + len(self._queue[taken].frame) <= MAX_BATCH
            ):
                rows += len(self._queue[taken].frame)
                taken += 1
            batch, self._queue = self._queue[:taken], self._queue[taken:]
        try:
            groups: dict[int, list[_Ask]] = {}
            for ask in batch:  # a reload may have come between two calls
                groups.setdefault(id(ask.deployed), []).append(ask)
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

    def _answer(self, asks: list[_Ask]) -> None:
        """Predict the calls' orders together; on an error, each alone (so it finds its own)."""
        if len(asks) > 1:
            try:
                value, risk, cause = self._predict(
                    asks[0].deployed, pd.concat([a.frame for a in asks], ignore_index=True)
                )
            except Exception:  # a bad order fails only its own call, below
                pass
            else:
                start = 0
                for ask in asks:
                    end = start + len(ask.frame)
                    ask.result = (
                        value[start:end],
                        None if risk is None else risk[start:end],
                        None if cause is None else cause[start:end],
                    )
                    start = end
                return
        for ask in asks:
            try:
                ask.result = self._predict(ask.deployed, ask.frame)
            except Exception as error:
                ask.error = error


# --------------------------------------------------------------------------------------------
# The engine


class DecisionEngine:
    """Decides arms for orders online; thread-safe. Build it with :meth:`from_store`."""

    def __init__(
        self,
        store: Store,
        settings: ServeSettings,
        journal: Journal,
        deployed: _Deployed,
        prices: Mapping[str, float],
        *,
        clock: Clock = utc_now,
    ) -> None:
        _check_model(deployed, settings)
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
        self._combiner = _Combiner(self._predict)
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
        return cls(store, settings, journal, _deploy(record), store.prices(), clock=clock)

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
        batch = _prepare(orders, deployed, salt)
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
                batch = _prepare(orders, current, salt)
                scores = self._score(current, batch, stale)
            else:
                more = self._score(scores.model, batch, missing)
                scores = _merge(scores, more)
        if records:
            self._write(records, commit)
        for entry in standing:
            if entry.commit is not commit:
                self._wait(entry)
        return [dict(entry.response) for entry in standing]

    def _stale(self, batch: _Batch) -> IntArray:
        """Positions of the orders without a standing decision for their signals."""
        standing = self._standing
        rows = [
            k
            for k, (key, signature) in enumerate(zip(batch.keys, batch.signatures, strict=True))
            if (entry := standing.get(key)) is None or entry.signature != signature
        ]
        return np.asarray(rows, dtype=np.int64)

    def _score(self, deployed: _Deployed, batch: _Batch, rows: IntArray) -> _Scores:
        """Net values (and risk) of the orders at ``rows``, in one vectorised prediction."""
        model = deployed.model
        if not len(rows):  # every order has its standing decision: nothing to predict
            none = np.empty(0)
            has_risk = model.risk_model is not None
            return _Scores(
                deployed,
                rows,
                np.empty((0, len(deployed.arms))),
                none if has_risk else None,
                np.empty(0, dtype=object) if has_risk else None,
            )
        try:
            value, risk, cause = self._combiner.predict(deployed, batch.frame.iloc[rows])
        except SchemaError as error:
            raise SchemaError(f"orders: {error}") from None
        return _Scores(deployed, rows, value, risk, cause)

    def _predict(self, deployed: _Deployed, X: pd.DataFrame) -> _Predicted:
        """Net value per order and treatment arm, and risk and cause when the model has them."""
        model = deployed.model
        effects = model.predict_effects(X)
        value = effects.net_value(self.settings.costs, self.settings.vouchers).value
        risk = cause = None
        if model.risk_model is not None:
            scored = model.predict_risk(X)
            risk = scored["risk"].to_numpy(np.float64)
            cause = scored["cause"].astype(str).to_numpy(dtype=object)
        return np.asarray(value, dtype=np.float64), risk, cause

    def _decide(
        self, batch: _Batch, scores: _Scores, commit: _Commit, now: datetime
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
        try:
            self.journal.append(records)
        except BaseException as error:
            commit.error = error
            self._failed = error
            raise
        finally:
            commit.done.set()

    def _wait(self, entry: _Standing) -> None:
        """Return another call's decision only once it is on disk."""
        entry.commit.done.wait()
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
            deployed = _deploy(record)
            _check_model(deployed, self.settings)
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
# Orders in


def _prepare(orders: Sequence[Mapping[str, Any]], deployed: _Deployed, salt: str) -> _Batch:
    """Validate the orders and build their model inputs, signatures and hash draws."""
    if not isinstance(orders, list | tuple):
        raise SchemaError(f"orders must be a list of objects; got {type(orders).__name__}")
    if len(orders) > MAX_BATCH:
        raise SchemaError(f"at most {MAX_BATCH:,} orders per call; got {len(orders):,}")
    not_objects = [k for k, o in enumerate(orders) if not isinstance(o, Mapping)]
    if not_objects:
        raise SchemaError(f"orders[{not_objects[0]}] must be an object of fields")
    inputs = deployed.model.inputs
    required = {"order_id", *inputs}
    for k, order in enumerate(orders):
        missing = required.difference(order.keys())
        if missing:
            raise SchemaError(
                f"orders[{k}] lacks field(s) {', '.join(sorted(missing))}; every order needs "
                f"order_id, {', '.join(inputs)}"
            )
    ids = [order["order_id"] for order in orders]
    bad_ids = [k for k, i in enumerate(ids) if not _valid_id(i)]
    if bad_ids:
        raise SchemaError(
            f"orders[{bad_ids[0]}].order_id must be a non-empty text or an integer; got "
            f"{ids[bad_ids[0]]!r}"
        )
    keys = np.array([str(i) for i in ids], dtype=object)
    if len(set(keys)) < len(keys):
        where = np.flatnonzero(pd.Index(keys).duplicated(keep=False))
        raise SchemaError(
            f"order_id {keys[where[0]]} appears more than once (orders "
            f"{', '.join(map(str, where[:5]))}); send each order once per call"
        )
    columns = {name: _column(name, [o[name] for o in orders], deployed.numeric) for name in inputs}
    return _Batch(
        ids=list(ids),
        keys=keys,
        frame=pd.DataFrame(columns, index=pd.RangeIndex(len(orders))),
        signatures=_signatures(columns),
        hold=_hash_unit(keys, salt),
        pick=_hash_unit(keys, salt + _EXPLORE_SALT),
    )


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and bool(value.strip())


def _column(
    name: str, values: list[Any], numeric: frozenset[str] | None
) -> FloatArray | NDArray[np.object_]:
    """One model input of the orders, checked: numbers (missing: NaN), or texts (or None)."""
    if numeric is None:  # a model without an encoder: numbers are what look like numbers
        is_numeric = pd.api.types.is_numeric_dtype(pd.Series(values))
    else:
        is_numeric = name in numeric
    if name == "order_value" or is_numeric:
        strange = np.zeros(len(values), dtype=bool)
        try:  # numbers, None (NaN), numeric texts and booleans convert in one pass
            numbers = np.asarray(values, dtype=np.float64)
            if numbers.ndim != 1:
                raise ValueError(name)
        except (TypeError, ValueError):  # something else: find it
            converted = [_as_number(v) for v in values]
            strange = np.array([c is _NOT_A_NUMBER for c in converted])
            numbers = np.array([math.nan if c is _NOT_A_NUMBER else c for c in converted])
        bad = strange | np.isinf(numbers)
        if name == "order_value":
            bad |= np.isnan(numbers) | (numbers < 0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            kind = "a finite number >= 0" if name == "order_value" else "a number or null"
            raise SchemaError(f"orders[{first}].{name} must be {kind}; got {values[first]!r}")
        return numbers
    texts = np.fromiter(values, dtype=object, count=len(values))
    if pd.api.types.infer_dtype(texts, skipna=True) not in ("string", "empty"):
        scalar = [v is None or isinstance(v, str | int | float) for v in values]
        if not all(scalar):
            first = scalar.index(False)
            raise SchemaError(
                f"orders[{first}].{name} must be a text or null; got {values[first]!r}"
            )
        texts = np.array([_as_text(v) for v in values], dtype=object)
    return texts


_NOT_A_NUMBER = object()


def _as_number(value: Any) -> Any:
    """A number as is, a numeric text as its number, None as NaN; anything else a marker."""
    if value is None:
        return math.nan
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _NOT_A_NUMBER
    return _NOT_A_NUMBER


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _signatures(columns: Mapping[str, NDArray[Any]]) -> NDArray[np.object_]:
    """A 64-bit hash per order of its model inputs (by name), as 16 hex digits.

    Numbers count to 9 significant digits, so a value that went through a text format and
    moved in its last digits is the same signal (as the store's ingest compares them).
    """
    names = sorted(columns)
    numbers = [_significant(columns[n]) for n in names if columns[n].dtype == np.float64]
    texts = [columns[n] for n in names if columns[n].dtype != np.float64]
    n = len(next(iter(columns.values()))) if columns else 0
    packed = np.ascontiguousarray(np.column_stack(numbers) if numbers else np.empty((n, 0)))
    rows = [packed[k].tobytes() for k in range(n)]
    words = [
        "\x1f".join("\x00" if t is None else t for t in row).encode()
        for row in zip(*texts, strict=True)
    ] or [b""] * n
    return np.array(
        [
            hashlib.blake2b(number + word, digest_size=8).hexdigest()
            for number, word in zip(rows, words, strict=True)
        ],
        dtype=object,
    )


def _significant(values: FloatArray, digits: int = 9) -> FloatArray:
    nonzero = np.isfinite(values) & (values != 0)
    exponent = np.floor(np.log10(np.abs(np.where(nonzero, values, 1.0))))
    scale = 10.0 ** (digits - 1 - exponent)
    rounded = np.where(nonzero, np.round(values * scale) / scale, values)
    return np.where(np.isnan(rounded), np.nan, rounded) + 0.0  # one NaN, and -0.0 as 0.0


def _hash_unit(keys: NDArray[np.object_], salt: str) -> FloatArray:
    """``hash_unit(order_ids, salt)`` of :mod:`uplift.experiment.assignment`, bit for bit.

    In Python rather than DuckDB: opening DuckDB costs about 17 ms a call, more than the md5
    of 10,000 ids here (tests check the two agree).
    """
    prefix = salt + ":"
    digits = [
        int(hashlib.md5((prefix + key).encode()).hexdigest()[:_HASH_HEX_DIGITS], 16) for key in keys
    ]
    return np.asarray(digits, dtype=np.float64) / float(16**_HASH_HEX_DIGITS)


# --------------------------------------------------------------------------------------------
# Helpers


def _deploy(record: ModelRecord) -> _Deployed:
    """Load a registered model and learn which of its inputs are numbers."""
    model = load_registered(record)
    return _Deployed(record, model, _numeric_inputs(model))


def _check_model(deployed: _Deployed, settings: ServeSettings) -> None:
    model = deployed.model
    settings.check_arms(model.treatment_arms, model.control)
    if model.revenue_model is None and not model.revenue_from_order_value:
        raise ConfigError(
            f"model {deployed.record.model_id} predicts no revenue uplift (its log had neither "
            "revenue nor order_value); the service values arms in revenue: retrain with them"
        )


def _numeric_inputs(model: UpliftModel) -> frozenset[str] | None:
    """The inputs the model's encoder reads as numbers (None when it has no encoder)."""
    candidates = [
        getattr(model.retained_model, "encoder_", None),
        getattr(model.revenue_model, "encoder_", None),
        None if model.risk_model is None else model.risk_model.encoder,
    ]
    for encoder in candidates:
        if isinstance(encoder, FeatureEncoder) and set(model.inputs) <= set(encoder.columns):
            return frozenset(c for c in model.inputs if c not in encoder.categories)
    return None


def _merge(first: _Scores, second: _Scores) -> _Scores:
    def join(a: Any, b: Any) -> Any:
        return None if a is None or b is None else np.concatenate([a, b])

    return _Scores(
        first.model,
        np.concatenate([first.rows, second.rows]),
        np.concatenate([first.value, second.value]),
        join(first.risk, second.risk),
        join(first.cause, second.cause),
    )


def _decision_ids(n: int) -> list[str]:
    """``n`` random ids of 32 hex digits (128 bits, as a UUID4 has 122)."""
    text = os.urandom(16 * n).hex()
    return [text[32 * k : 32 * (k + 1)] for k in range(n)]


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
