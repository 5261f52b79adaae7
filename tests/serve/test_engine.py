"""The decision engine of ``uplift serve``: the weekly policy, one order at a time.

A model trained on a simulated week is registered as the champion of a store; the orders
decided are another simulated week. Streams of single orders use the linear S-learner (it
predicts one order in milliseconds); the policy's arms are compared with ``uplift rank`` on the
weekly job's learner too, whose policy uses more arms.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.log import ExperimentLog
from uplift.data.project import Project
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.exceptions import ConfigError, SchemaError, StoreError
from uplift.experiment.assignment import hash_unit
from uplift.loop.store import ModelRecord, Store
from uplift.models import model_digest, read_card, save_model, train_uplift
from uplift.models.uplift_model import UpliftModel
from uplift.policy.ranking import rank_orders
from uplift.serve.combiner import Combiner
from uplift.serve.engine import MAX_BATCH, DecisionEngine
from uplift.serve.journal import Journal, read_journal
from uplift.serve.orders import hash_unit as serve_hash_unit
from uplift.serve.pacing import allocate, fill
from uplift.serve.settings import ServeSettings

COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
MONDAY = datetime(2026, 10, 5, tzinfo=UTC)  # 2026-W41
RESPONSE = {
    "order_id", "arm", "propensity", "net_value", "reason", "decision_id", "model_id", "risk",
    "cause",
}  # fmt: skip


@dataclass(frozen=True)
class World:
    store: Path
    model: UpliftModel
    model_dir: Path
    orders: pd.DataFrame

    def records(self, rows: slice = slice(None)) -> list[dict[str, Any]]:
        return self.orders.iloc[rows].to_dict("records")


def register(store: Store, model: UpliftModel, folder: Path, model_id: str, week: str) -> Path:
    path = save_model(model, folder / "models" / model_id)
    card = read_card(path)
    store.register_model(
        ModelRecord(
            model_id, week, model.learner, str(path), card, 1.0, 0.1, week, model_digest(path)
        )
    )
    return path


def make_world(folder: Path, learner: str) -> World:
    log = ExperimentLog.from_frame(simulate(4000, weeks=1, seed=1, world="easy").log)
    model = train_uplift(log, learner=learner, costs=COSTS)
    store = Store(folder / "uplift.duckdb")
    path = register(store, model, folder, "m1", "2026-W40")
    orders = simulate(600, weeks=1, seed=7, world="easy").log
    return World(store.path, model, path, orders[["order_id", *model.inputs]])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("serve"), "s_linear")


@pytest.fixture(scope="module", params=["s_linear", "s_lgbm"])
def any_world(
    request: pytest.FixtureRequest, world: World, tmp_path_factory: pytest.TempPathFactory
) -> World:
    if request.param == "s_linear":
        return world
    return make_world(tmp_path_factory.mktemp("serve_lgbm"), request.param)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = MONDAY) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def serving(
    world: World,
    folder: Path,
    settings: ServeSettings | None = None,
    clock: Callable[[], datetime] | None = None,
    store: Path | None = None,
) -> Iterator[DecisionEngine]:
    with Journal(folder / "journal.jsonl") as journal:
        yield DecisionEngine.from_store(
            store or world.store,
            settings or ServeSettings(costs=COSTS),
            journal,
            clock=clock or Clock(),
        )


def own_store(world: World, folder: Path) -> Path:
    """A copy of the module's store that a test may change."""
    target = folder / "own.duckdb"
    shutil.copy(world.store, target)
    return target


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ the policy


def test_arms_equal_rank_without_capacity(any_world: World, tmp_path: Path) -> None:
    world = any_world
    settings = ServeSettings(costs=COSTS, holdout=0.0, explore=0.0)
    with serving(world, tmp_path, settings) as engine:
        out = engine.decide(world.records())
    effects = world.model.predict_effects(world.orders).with_order_ids(world.orders["order_id"])
    queue = rank_orders(effects, costs=COSTS, control=CONTROL).queue.set_index("order_id")
    queue = queue.reindex(world.orders["order_id"])
    assert [o["arm"] for o in out] == queue["arm"].astype(str).tolist()
    assert len({o["arm"] for o in out}) >= 2
    np.testing.assert_allclose([o["net_value"] for o in out], queue["net_value"], rtol=1e-12)
    assert {o["propensity"] for o in out} == {1.0}
    assert set(out[0]) == RESPONSE
    assert out[0]["model_id"] == "m1"
    assert 0 < out[0]["risk"] < 1
    assert isinstance(out[0]["cause"], str)


def test_holdout_and_exploration_follow_the_order_hash(any_world: World, tmp_path: Path) -> None:
    world = any_world
    settings = ServeSettings(costs=COSTS, holdout=0.2, explore=0.2, salt="s1")
    with serving(world, tmp_path, settings) as engine:
        out = pd.DataFrame(engine.decide(world.records()))
    journal = pd.DataFrame(lines(tmp_path / "journal.jsonl"))
    ids = world.orders["order_id"]
    u = hash_unit(ids, "s1")
    arms = world.model.treatment_arms
    explore_arm = np.array(arms)[(hash_unit(ids, "s1:explore") * len(arms)).astype(int)]
    held, explored = u < 0.2, (u >= 0.2) & (u < 0.4)
    assert 0.1 < held.mean() < 0.3
    assert 0.1 < explored.mean() < 0.3
    assert (out["arm"][held] == CONTROL).all()
    assert (out["reason"][held] == "holdout").all()
    assert (out["arm"][explored] == explore_arm[explored]).all()
    assert (out["reason"][explored] == "explore").all()
    policy = ~held & ~explored
    assert not out["reason"][policy].isin(["holdout", "explore"]).any()
    # The propensity of the procedure, as rank computes it (explore draws treatment arms).
    intended = journal["policy_arm"].to_numpy()
    given = out["arm"].to_numpy()
    k = len(arms)
    expected = 0.6 * (given == intended) + np.where(given == CONTROL, 0.2, 0.2 / k)
    np.testing.assert_allclose(out["propensity"], expected)
    assert (journal["holdout"] == held).all()
    assert (journal["policy_arm"][policy] == out["arm"][policy]).all()


def test_prices_start_from_the_last_weekly_allocation(world: World, tmp_path: Path) -> None:
    store = own_store(world, tmp_path)
    Store(store).save_prices("2026-W40", {"expedite": 3.5, "reassurance": 0.25})
    settings = ServeSettings(costs=COSTS, capacities={"expedite": 1000}, holdout=0, explore=0)
    with serving(world, tmp_path, settings, store=store) as engine:
        assert engine.shadow_prices() == {"expedite": 3.5}  # an arm without capacity: no price
        assert engine.capacity_left() == {"expedite": 1000}


# ------------------------------------------------------------------ bad input and settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o[1].pop("payment_status"), r"orders\[1\] lacks field\(s\) payment_status"),
        (lambda o: o[2].pop("order_id"), r"orders\[2\] lacks field\(s\) order_id"),
        (lambda o: o[0].update(order_value=-3), r"orders\[0\]\.order_value must be a finite"),
        (lambda o: o[0].update(order_value=None), r"orders\[0\]\.order_value must be a finite"),
        (lambda o: o[3].update(prior_orders="many"), r"orders\[3\]\.prior_orders must be a num"),
        (lambda o: o[3].update(device={"a": 1}), r"orders\[3\]\.device must be a text"),
        (lambda o: o[1].update(order_id=True), r"orders\[1\]\.order_id must be a non-empty"),
        (lambda o: o[4].update(order_id=o[0]["order_id"]), r"appears more than once \(orders 0, 4"),
        (lambda o: o.append("order"), r"orders\[5\] must be an object"),
    ],
)
def test_bad_orders_are_named_by_position_and_field(
    world: World, tmp_path: Path, change: Any, message: str
) -> None:
    orders = world.records(slice(0, 5))
    change(orders)
    with serving(world, tmp_path) as engine:
        with pytest.raises(SchemaError, match=message):
            engine.decide(orders)
        assert engine.decide(world.records(slice(0, 1)))  # the engine still serves
    assert len(lines(tmp_path / "journal.jsonl")) == 1


def test_numbers_as_text_and_missing_values_are_read(world: World, tmp_path: Path) -> None:
    orders = world.records(slice(0, 2))
    orders[0]["prior_orders"] = str(orders[0]["prior_orders"])
    orders[1]["device"] = None
    with serving(world, tmp_path) as engine:
        assert [o["order_id"] for o in engine.decide(orders)] == [1, 2]


def test_more_orders_than_a_batch_holds_are_refused(world: World, tmp_path: Path) -> None:
    with serving(world, tmp_path) as engine, pytest.raises(SchemaError, match=r"at most 10,000"):
        engine.decide(world.records(slice(0, 1)) * (MAX_BATCH + 1))


def test_settings_naming_unknown_arms_are_refused(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(costs={"teleport": 1.0}, capacities={"drone": 5, "expedite": 3})
    refused = pytest.raises(ConfigError, match=r"costs name teleport; capacities name drone")
    with refused, serving(world, tmp_path, settings):
        pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity_period": "month"}, r"capacity_period must be one of 'day', 'week'"),
        ({"holdout": 0.6, "explore": 0.4}, r"holdout \+ explore must leave orders"),
        ({"capacities": {"expedite": 2.5}}, r"capacities must be whole numbers"),
        ({"costs": {"expedite": -1.0}}, r"costs must be finite numbers >= 0"),
        ({"explore": 1.0}, r"explore must be a share in \[0, 1\)"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings(**options)


def test_settings_come_from_the_project_file() -> None:
    project = Project(
        costs={"expedite": 5.0},
        vouchers={"reassurance": 1.0},
        capacities={"expedite": 40.0},
        holdout=0.05,
        explore=0.02,
    )
    settings = ServeSettings.from_project(project, capacity_period="day")
    assert settings.costs == {"expedite": 5.0}
    assert settings.vouchers == {"reassurance": 1.0}
    assert settings.capacities == {"expedite": 40.0}
    assert (settings.holdout, settings.explore, settings.capacity_period) == (0.05, 0.02, "day")
    assert ServeSettings.from_project(project, holdout=0.2).holdout == 0.2
    assert ServeSettings.from_project(Project()).holdout == 0.1  # the weekly job's default


# ------------------------------------------------------------------ idempotence


def test_the_same_order_asked_again_gets_the_same_decision(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(costs=COSTS, capacities={"reassurance": 500})
    with serving(world, tmp_path, settings) as engine:
        first = engine.decide(world.records(slice(0, 50)))
        left = engine.capacity_left()
        again = engine.decide(world.records(slice(0, 60)))
        assert again[:50] == first
        assert engine.capacity_left()["reassurance"] <= left["reassurance"]
        assert engine.decide(world.records(slice(0, 50))) == first
    assert len(lines(tmp_path / "journal.jsonl")) == 60


def test_signals_that_only_change_format_are_the_same(world: World, tmp_path: Path) -> None:
    order = world.records(slice(0, 1))[0]
    same = dict(
        order,
        stock_confidence=order["stock_confidence"] * (1 + 1e-13),  # a text round trip
        prior_orders=float(order["prior_orders"]),
        hour=str(order["hour"]),
        extra_field="ignored",
    )
    with serving(world, tmp_path) as engine:
        assert engine.decide([order]) == engine.decide([same])
        assert engine.decide([dict(order, prior_orders=order["prior_orders"] + 1)]) != (
            engine.decide([order])
        )


def test_the_hash_is_that_of_uplift_assign() -> None:
    ids = pd.Series(["A-1", "17", "ü-ñ", "0017", "x" * 300, *(f"o{k}" for k in range(500))])
    keys = ids.to_numpy(dtype=object)
    np.testing.assert_array_equal(serve_hash_unit(keys, "salt"), hash_unit(ids, "salt"))
    np.testing.assert_array_equal(serve_hash_unit(keys, ""), hash_unit(ids, ""))


def test_a_batch_fills_an_arm_with_its_orders_of_most_value() -> None:
    priced = np.array([[4.0, 1.0], [5.0, 3.0], [3.0, -1.0], [-1.0, -2.0]])
    room = np.array([1.0, np.inf])
    # Both first orders want arm 1 (room 1): the one of more value keeps it, the other moves.
    np.testing.assert_array_equal(fill(priced, room.copy()), [2, 1, 0, 0])
    # Order 0 held out, order 1 explored to arm 1; arm 2 has no room: order 2 falls to control.
    decided = allocate(
        priced,
        prices=np.zeros(2),
        room=np.array([1.0, 0.0]),
        hold=np.array([0.05, 0.15, 0.5, 0.9]),
        pick=np.array([0.9, 0.2, 0.5, 0.5]),
        holdout=0.1,
        explore=0.1,
    )
    np.testing.assert_array_equal(decided.arm, [0, 1, 0, 0])
    np.testing.assert_array_equal(decided.policy, [1, 1, 0, 0])  # the policy at that moment
    # Control: holdout + explore x (1 arm without room) / 2, + 0.8 when the policy chose it.
    np.testing.assert_allclose(decided.propensity, [0.15, 0.85, 0.95, 0.95])


def test_concurrent_predictions_are_combined_and_errors_stay_with_their_call() -> None:
    calls: list[int] = []

    def predict(model: Any, frame: pd.DataFrame) -> Any:
        calls.append(len(frame))
        threading.Event().wait(0.05)  # long enough for the other threads to queue
        if (frame["x"] < 0).any():
            raise SchemaError("x must be >= 0")
        value = frame[["x"]].to_numpy(np.float64) * 2
        return value, frame["x"].to_numpy(np.float64), None

    combiner: Combiner[Any, pd.DataFrame] = Combiner(
        predict, lambda parts: pd.concat(parts, ignore_index=True)
    )
    results: dict[int, Any] = {}

    def ask(k: int) -> None:
        try:
            results[k] = combiner.predict(None, pd.DataFrame({"x": [float(k), k + 0.5]}))  # type: ignore[arg-type]
        except SchemaError as error:
            results[k] = error

    def run(ks: range) -> None:
        threads = [threading.Thread(target=ask, args=(k,)) for k in ks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Good calls only: the ones that arrive while a model call runs wait and go together.
    run(range(15))
    assert len(calls) < 15  # fewer model calls than calls
    # With a bad call among them, a combined call that fails is retried call by call: the bad
    # call fails alone and every other still gets its own rows.
    results.clear()
    run(range(-1, 15))
    assert isinstance(results[-1], SchemaError)
    for k in range(15):
        value, risk, cause = results[k]
        np.testing.assert_array_equal(value[:, 0], [2 * k, 2 * k + 1])
        np.testing.assert_array_equal(risk, [k, k + 0.5])
        assert cause is None


def test_changed_signals_supersede_and_give_the_unit_back(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(costs=COSTS, capacities={"reassurance": 100}, holdout=0, explore=0)
    with serving(world, tmp_path, settings) as engine:
        orders = world.records(slice(0, 40))
        first = engine.decide(orders)
        k = next(i for i, o in enumerate(first) if o["arm"] == "reassurance")
        left = engine.capacity_left()["reassurance"]
        changed = dict(orders[k], order_value=0.0)  # nothing to protect: no arm pays
        (second,) = engine.decide([changed])
        assert second["arm"] == CONTROL
        assert second["decision_id"] != first[k]["decision_id"]
        assert engine.capacity_left()["reassurance"] == left + 1
        assert engine.decide([changed]) == [second]
        assert engine.decisions_by_arm[CONTROL] >= 1
    journal = lines(tmp_path / "journal.jsonl")
    assert len(journal) == 41
    assert journal[-1]["supersedes"] == first[k]["decision_id"]
    assert journal[-1]["order_id"] == orders[k]["order_id"]


def test_a_new_week_decides_again(world: World, tmp_path: Path) -> None:
    clock = Clock(MONDAY + timedelta(days=6, hours=23))
    with serving(world, tmp_path, clock=clock) as engine:
        (first,) = engine.decide(world.records(slice(0, 1)))
        clock.now += timedelta(hours=2)
        (second,) = engine.decide(world.records(slice(0, 1)))
    assert second["decision_id"] != first["decision_id"]
    journal = lines(tmp_path / "journal.jsonl")
    assert [r["week"] for r in journal] == ["2026-W41", "2026-W42"]
    assert journal[1]["supersedes"] is None


# ------------------------------------------------------------------ capacity


def test_threads_never_give_an_arm_beyond_its_capacity(world: World, tmp_path: Path) -> None:
    capacity = {"reassurance": 37, "delivery_update": 11}
    settings = ServeSettings(costs=COSTS, capacities=capacity, pacing_lead=1.0, explore=0.1)
    orders = world.records()
    results: list[list[dict[str, Any]]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(worker: int) -> None:
        start.wait()
        try:
            # Every thread asks for every order (in its own order and batches): all race.
            rng = np.random.default_rng(worker)
            picks = rng.permutation(len(orders))
            for chunk in np.array_split(picks, 20):
                results.append(engine.decide([orders[i] for i in chunk]))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    with serving(world, tmp_path, settings) as engine:
        threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        left = engine.capacity_left()
    journal = pd.DataFrame(lines(tmp_path / "journal.jsonl"))
    assert len(journal) == len(orders)
    assert journal["order_id"].is_unique
    given = journal["arm"].value_counts()
    for arm, cap in capacity.items():  # demand is far above capacity: never more
        assert 0 < given[arm] <= cap
        assert left[arm] == cap - given[arm]
    decided = {o["order_id"]: o["decision_id"] for batch in results for o in batch}
    for batch in results:  # every thread got the one decision of each order
        assert all(decided[o["order_id"]] == o["decision_id"] for o in batch)


def test_pacing_spends_capacity_over_the_period(world: World, tmp_path: Path) -> None:
    # About 500 of the 600 orders want reassurance: demand is 5x its capacity of 100 a day.
    capacity = 100
    settings = ServeSettings(
        costs=COSTS,
        capacities={"reassurance": capacity},
        capacity_period="day",
        holdout=0.0,
        explore=0.0,
    )
    orders = world.records()
    clock = Clock()
    used_at: dict[float, int] = {}
    given: list[dict[str, Any]] = []
    with serving(world, tmp_path, settings, clock) as engine:
        assert engine.decide([]) == []
        for k in range(0, len(orders), 3):  # a stream of calls of 3 orders (faster than 1)
            clock.now = MONDAY + timedelta(days=k / len(orders))
            given += engine.decide(orders[k : k + 3])
            if k + 3 in (60, 300, 600):
                used_at[(k + 3) / len(orders)] = capacity - engine.capacity_left()["reassurance"]
            if k + 3 == 300:
                prices = engine.shadow_prices()
    assert used_at[0.1] <= 0.2 * capacity  # not the first orders of the morning
    assert 0.35 * capacity <= used_at[0.5] <= 0.65 * capacity
    assert used_at[1.0] >= 0.9 * capacity  # and not left unused either
    assert prices["reassurance"] > 0  # by a price: the orders of most value get the arm
    effects = world.model.predict_effects(world.orders)
    wanted = effects.net_value(COSTS).value[:, effects.treatment_arms.index("reassurance")]
    chosen = [o["net_value"] for o in given if o["arm"] == "reassurance"]
    assert np.mean(chosen) > 2 * wanted[wanted > 0].mean()


def test_a_day_period_starts_afresh(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(
        costs=COSTS, capacities={"reassurance": 5}, capacity_period="day", pacing_lead=1.0
    )
    clock = Clock(MONDAY + timedelta(hours=12))
    with serving(world, tmp_path, settings, clock) as engine:
        engine.decide(world.records(slice(0, 100)))
        assert engine.capacity_left() == {"reassurance": 0}
        clock.now += timedelta(days=1)
        assert engine.capacity_left() == {"reassurance": 5}
        assert engine.period == "2026-10-06"


# ------------------------------------------------------------------ restart and reload


def test_a_restart_replays_the_week(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(costs=COSTS, capacities={"reassurance": 30}, pacing_lead=1.0)
    with serving(world, tmp_path, settings) as engine:
        first = engine.decide(world.records(slice(0, 100)))
        left = engine.capacity_left()
    with (tmp_path / "journal.jsonl").open("ab") as handle:
        handle.write(b'{"decision_id": "torn')  # killed in the middle of a write
    with serving(world, tmp_path, settings) as engine:
        assert engine.capacity_left() == left == {"reassurance": 0}
        assert engine.decide(world.records(slice(0, 100))) == first
    assert len(read_journal(tmp_path / "journal.jsonl")) == 100


def test_replay_goes_by_supersedes_not_by_line_order(world: World, tmp_path: Path) -> None:
    settings = ServeSettings(costs=COSTS, capacities={"reassurance": 30}, holdout=0, explore=0)
    order = world.records(slice(0, 1))[0]
    changed = dict(order, order_value=0.0)
    with serving(world, tmp_path, settings) as engine:
        (first,) = engine.decide([order])
        (second,) = engine.decide([changed])
    assert (first["arm"], second["arm"]) == ("reassurance", CONTROL)
    path = tmp_path / "journal.jsonl"
    path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    with serving(world, tmp_path, settings) as engine:
        assert engine.capacity_left() == {"reassurance": 30}
        assert engine.decide([changed]) == [second]


KILLED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from uplift.serve.engine import DecisionEngine
    from uplift.serve.journal import Journal
    from uplift.serve.settings import ServeSettings

    store, journal, orders = map(Path, sys.argv[1:4])
    settings = ServeSettings(**json.loads(sys.argv[4]))
    records = json.loads(orders.read_text())
    with Journal(journal) as j:
        engine = DecisionEngine.from_store(store, settings, j)
        for order in records:
            (decision,) = engine.decide([order])
            print(decision["decision_id"], decision["arm"], flush=True)
    """
)


def test_a_decision_returned_before_kill_9_is_in_the_journal(world: World, tmp_path: Path) -> None:
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps(world.records()))
    options = {"costs": COSTS, "capacities": {"reassurance": 25}, "pacing_lead": 1.0}
    journal = tmp_path / "journal.jsonl"
    arguments = [str(world.store), str(journal), str(orders), json.dumps(options)]
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as child:
        assert child.stdout is not None
        returned = [child.stdout.readline().split()[0].decode() for _ in range(40)]
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    journaled = [r["decision_id"] for r in read_journal(journal)]
    assert set(returned) <= set(journaled)
    settings = ServeSettings(**options)
    with serving(world, tmp_path, settings, clock=lambda: datetime.now(UTC)) as engine:
        used = 25 - engine.capacity_left()["reassurance"]
        again = engine.decide(world.records(slice(0, len(journaled))))
    assert used == sum(r["arm"] == "reassurance" for r in read_journal(journal)[: len(journaled)])
    assert [o["decision_id"] for o in again] == journaled  # nothing decided twice


def test_reload_switches_to_a_newer_champion(world: World, tmp_path: Path) -> None:
    store = own_store(world, tmp_path)
    with serving(world, tmp_path, store=store) as engine:
        (before,) = engine.decide(world.records(slice(0, 1)))
        assert not engine.reload()
        register(Store(store), world.model, tmp_path, "m2", "2026-W41")
        assert engine.maybe_reload(interval=0.0)
        assert engine.model_id == "m2"
        assert engine.decide(world.records(slice(0, 1))) == [before]  # standing decision
        (after,) = engine.decide(world.records(slice(1, 2)))
        assert (before["model_id"], after["model_id"]) == ("m1", "m2")
        assert not engine.maybe_reload(interval=3600.0)


def test_a_broken_champion_keeps_the_current_model(world: World, tmp_path: Path) -> None:
    store = own_store(world, tmp_path)
    with serving(world, tmp_path, store=store) as engine:
        record = Store(store).models()[0]
        Store(store).register_model(
            ModelRecord("m3", "2026-W42", record.learner, str(tmp_path / "nowhere"), record.card,
                        1.0, 0.1, "2026-W42", record.digest)
        )  # fmt: skip
        assert not engine.maybe_reload(interval=0.0)
        assert engine.model_id == "m1"
        assert engine.reload_error is not None
        assert "nowhere" in engine.reload_error
        assert engine.decide(world.records(slice(0, 1)))[0]["model_id"] == "m1"


def test_a_store_without_champion_is_refused(tmp_path: Path) -> None:
    refused = pytest.raises(StoreError, match=r"no champion model to serve")
    with Journal(tmp_path / "journal.jsonl") as journal, refused:
        DecisionEngine.from_store(tmp_path / "empty.duckdb", ServeSettings(), journal)


def test_the_journal_imports_into_the_store(world: World, tmp_path: Path) -> None:
    store = own_store(world, tmp_path)
    settings = ServeSettings(costs=COSTS, holdout=0.0, explore=0.0)
    with serving(world, tmp_path, settings, store=store) as engine:
        first = engine.decide(world.records(slice(0, 10)))
        (changed,) = engine.decide([dict(world.records(slice(0, 1))[0], order_value=0.0)])
    assert Store(store).import_journal(tmp_path / "journal.jsonl") == 11
    assert Store(store).import_journal(tmp_path / "journal.jsonl") == 0
    served = Store(store).served_decisions(["2026-W41"]).set_index("order_id")
    assert len(served) == 10
    assert served.loc["1", "decision_id"] == changed["decision_id"]
    assert served.loc["2", "decision_id"] == first[1]["decision_id"]
    assert served.loc["2", "propensity"] == first[1]["propensity"]


# ------------------------------------------------------------------ durability


def test_a_failed_journal_write_stops_the_engine(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(world, tmp_path) as engine:
        engine.decide(world.records(slice(0, 1)))

        def broken(records: list[dict[str, Any]]) -> None:
            raise StoreError("journal.jsonl: writing the journal failed (No space left)")

        monkeypatch.setattr(engine.journal, "append", broken)
        with pytest.raises(StoreError, match=r"writing the journal failed"):
            engine.decide(world.records(slice(1, 2)))
        assert engine.failed
        monkeypatch.undo()
        with pytest.raises(StoreError, match=r"refuses to decide until the service restarts"):
            engine.decide(world.records(slice(0, 1)))


def test_a_decision_is_returned_to_no_one_before_it_is_on_disk(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    returned: dict[str, dict[str, Any]] = {}
    with serving(world, tmp_path) as engine:
        append = engine.journal.append

        def slow_append(records: list[dict[str, Any]]) -> None:
            release.wait(10)  # the disk is slow
            append(records)

        monkeypatch.setattr(engine.journal, "append", slow_append)

        def ask(name: str) -> None:
            (returned[name],) = engine.decide(world.records(slice(0, 1)))

        first = threading.Thread(target=ask, args=("first",))
        first.start()
        while not engine.decisions_by_arm:  # the first call has decided, and is writing
            threading.Event().wait(0.005)
        second = threading.Thread(target=ask, args=("second",))
        second.start()
        second.join(0.3)
        assert not returned  # the same order asked again waits for the write
        release.set()
        first.join()
        second.join()
    assert returned["first"] == returned["second"]
    assert len(lines(tmp_path / "journal.jsonl")) == 1


def test_reload_takes_newly_stored_prices(world: World, tmp_path: Path) -> None:
    store = own_store(world, tmp_path)
    settings = ServeSettings(costs=COSTS, capacities={"expedite": 50})
    with serving(world, tmp_path, settings, store=store) as engine:
        assert engine.shadow_prices() == {"expedite": 0.0}
        Store(store).save_prices("2026-W41", {"expedite": 4.0})
        assert not engine.reload()  # the same champion
        assert engine.shadow_prices() == {"expedite": 4.0}
