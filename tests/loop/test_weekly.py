"""The weekly job end to end on the order world, its command line, and the demo."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.files import write_table
from uplift.data.log import ExperimentLog, read_log
from uplift.data.simulate import ARM_COSTS, CONTROL, simulate
from uplift.exceptions import ConfigError, ModelLoadError, SchemaError, StoreError
from uplift.loop import demo
from uplift.loop.store import Store
from uplift.loop.weekly import WeeklyConfig, WeeklyJob, WeeklyResult, load_registered
from uplift.reports.results import read_report

ORDERS = 15_000
COSTS = {arm: cost for arm, cost in ARM_COSTS.items() if arm != CONTROL}
WEEKS = ("2026-W40", "2026-W41")


def simulate_weeks(folder: Path, effect_drift: float) -> list[Path]:
    """Two weeks of the order world as files; the second loses ``effect_drift`` of its effects.

    Nothing else moves (``drift=0``): the order mix and base rates stay those the model learned,
    so a model trained on the first week is well specified for the second unless effects drift.
    """
    paths = []
    for k, week in enumerate(WEEKS):
        world = simulate(
            ORDERS,
            weeks=1,
            seed=100 + k,
            world="easy",
            start_week=week,
            first_order_id=1 + k * ORDERS,
            drift=0.0,
            effect_drift=effect_drift if k == 1 else 0.0,
        )
        paths.append(write_table(world.log, folder / f"{week}.parquet"))
    return paths


def run_weeks(folder: Path, effect_drift: float) -> list[WeeklyResult]:
    """Ingest both weeks and run the job for each, as the weekly schedule would."""
    store = Store(folder / "uplift.duckdb")
    config = WeeklyConfig(
        store=store.path, out=folder / "reports", costs=COSTS, segments=("payment_status",)
    )
    results = []
    for path, week in zip(simulate_weeks(folder, effect_drift), WEEKS, strict=True):
        store.ingest(read_log(path))
        results.append(WeeklyJob(config).run(week))
    return results


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[WeeklyResult]]:
    folder = tmp_path_factory.mktemp("steady")
    return folder, run_weeks(folder, effect_drift=0.0)


@pytest.mark.slow
def test_first_week_trains_the_first_champion(steady: tuple[Path, list[WeeklyResult]]) -> None:
    folder, (first, _) = steady
    assert first.promoted
    assert first.report.learn is None
    assert first.champion_id == "2026-W40-s_lgbm-s0"
    assert (folder / "reports" / "2026-W40" / "index.html").is_file()
    card = Store(folder / "uplift.duckdb").models()[0].card
    assert card["learner"] == "s_lgbm"
    assert card["metrics"]["week"] == "2026-W40"


@pytest.mark.slow
def test_second_week_checks_last_weeks_champion(steady: tuple[Path, list[WeeklyResult]]) -> None:
    # Whether one world's check passes is a matter of chance (5% false flags by design); that
    # rate is tested over many worlds in test_reports. Here: the wiring of the weekly job.
    _, (_, second) = steady
    learn = second.report.learn
    assert learn is not None
    # The week-2 check uses the champion trained in week 1, not the week's own challenger.
    assert learn.model_id == "2026-W40-s_lgbm-s0"
    assert learn.trained_through == "2026-W40"
    assert set(learn.by_arm["arm"]) == {
        "agent_call", "delivery_update", "expedite", "payment_rescue", "reassurance"
    }  # fmt: skip
    assert learn.by_arm[["predicted", "measured", "se", "z"]].notna().all().all()
    assert "<h2>Learn: did last week" in second.paths["html"].read_text()
    change = second.report.models
    assert change is not None
    assert list(change.table["role"]) == ["challenger", "champion"]
    assert change.promoted == (change.diff > 0)
    assert second.champion_id == ("2026-W41-s_lgbm-s0" if change.promoted else "2026-W40-s_lgbm-s0")


@pytest.mark.slow
def test_drifted_world_is_flagged(tmp_path: Path) -> None:
    # The second week's effects are reversed (effect_drift=2: each arm's effect lost twice
    # over). Arms that kept 1.5-2.5% more orders now lose as many: about 5 standard errors
    # from the prediction at this size, well past the 2.58 Bonferroni bar.
    _, second = run_weeks(tmp_path, effect_drift=2.0)
    learn = second.report.learn
    assert learn is not None
    assert learn.flagged
    flagged = set(learn.by_arm.loc[learn.by_arm["flagged"], "arm"])
    assert {"payment_rescue", "expedite"} <= flagged
    page = second.paths["html"].read_text()
    assert "disagree with the holdout" in page
    assert json.loads(second.paths["json"].read_text())["learn"]["flagged"] is True


@pytest.mark.slow
def test_running_a_week_again_replaces_its_records(
    steady: tuple[Path, list[WeeklyResult]],
) -> None:
    folder, results = steady
    store = Store(folder / "uplift.duckdb")
    before = [m.model_id for m in store.models()]
    config = WeeklyConfig(store=store.path, out=folder / "reports", costs=COSTS, segments=())
    again = WeeklyJob(config).run("2026-W41")
    assert [m.model_id for m in store.models()] == before
    assert list(store.reports()["week"]) == list(WEEKS)
    assert again.champion_id == results[1].champion_id


SURGE_ORDERS = 8000
SURGE_WEEKS = ("2026-W40", "2026-W41", "2026-W42")


@pytest.fixture(scope="module")
def surged(tmp_path_factory: pytest.TempPathFactory) -> list[WeeklyResult]:
    """Three weeks of the realistic world, nothing drifting; in the third, twice as many
    orders carry a payment problem (pending or failed payments). Half the orders are on
    control, so that the risk model, fitted on control orders, has enough of them."""
    folder = tmp_path_factory.mktemp("surge")
    store = Store(folder / "uplift.duckdb")
    config = WeeklyConfig(store=store.path, out=folder / "reports", costs=COSTS, segments=())
    results = []
    for k, week in enumerate(SURGE_WEEKS):
        world = simulate(
            SURGE_ORDERS,
            weeks=1,
            seed=1 + k,
            start_week=week,
            first_order_id=1 + k * SURGE_ORDERS,
            drift=0.0,
            control_share=0.5,
            cause_surge={"payment": 2.0} if k == 2 else None,
        )
        store.ingest(ExperimentLog.from_frame(world.log))
        results.append(WeeklyJob(config).run(week))
    return results


def grew_most(result: WeeklyResult) -> tuple[str, float, float]:
    """The cause whose share of revenue at risk grew most: its name, z and the bar."""
    risk = result.report.risk
    assert risk is not None
    causes = risk.causes.dropna(subset=["share_change_z"])
    top = causes.loc[causes["share_change"].idxmax()]
    return str(top["cause"]), float(top["share_change_z"]), risk.threshold_z


@pytest.mark.slow
def test_first_week_scores_the_risk_with_the_model_deployed_after_it(
    surged: list[WeeklyResult],
) -> None:
    first = surged[0]
    risk = first.report.risk
    assert risk is not None
    assert risk.model_id == first.champion_id == "2026-W40-s_lgbm-s0"
    assert "No model was in place before this week" in risk.model_note
    assert risk.last_week == ""
    assert risk.causes["orders"].sum() == SURGE_ORDERS
    assert risk.causes["last_at_risk_share"].isna().all()
    assert risk.basis == "randomised"
    assert risk.effects["measured"].any()
    assert 0 < risk.ece < 0.1
    assert list(risk.calibration.columns) == ["mean_predicted", "observed", "orders", "weight"]
    page = first.paths["html"].read_text()
    assert "<h2>Where the risk comes from</h2>" in page
    assert "There is no earlier week to compare with." in page


@pytest.mark.slow
def test_a_steady_week_claims_no_growth_beyond_noise(surged: list[WeeklyResult]) -> None:
    second = surged[1]
    risk = second.report.risk
    assert risk is not None
    # The champion in place (trained in week 40) scores both weeks.
    assert risk.model_id == "2026-W40-s_lgbm-s0"
    assert risk.model_note == ""
    assert risk.last_week == "2026-W40"
    _, z, bar = grew_most(second)
    # Measured: z = 0.60 against a bar of 2.69 (seeds 11, 21 and 31: 0.68, 1.94 and 1.74).
    assert z < bar
    assert "within week-to-week noise" in second.paths["markdown"].read_text()


@pytest.mark.slow
def test_a_surge_of_payment_trouble_is_named_beyond_noise(surged: list[WeeklyResult]) -> None:
    third = surged[2]
    cause, z, bar = grew_most(third)
    assert cause == "payment"
    # Measured: payment's share of revenue at risk went from 27% to 42%, z = 7.1 against a bar
    # of 2.69 (the same weeks from seeds 11, 21 and 31: z = 10.8, 7.4 and 10.4).
    assert z > bar + 2
    markdown = third.paths["markdown"].read_text()
    assert "Since 2026-W41, payment's share grew most" in markdown
    assert "beyond week-to-week noise" in markdown
    data = json.loads(third.paths["json"].read_text())
    rows = {row["cause"]: row for row in data["risk"]["causes"]}
    assert rows["payment"]["share_change"] > 0.05
    assert read_report(third.paths["json"]).risk is not None


@pytest.mark.slow
def test_a_model_without_a_risk_model_leaves_the_section_out_with_a_note(
    surged: list[WeeklyResult],
) -> None:
    job = WeeklyJob(WeeklyConfig(store=surged[0].paths["html"].parents[2] / "uplift.duckdb"))
    record = job.store.champion(before="2026-W41")
    assert record is not None
    model = dataclasses.replace(load_registered(record), risk_model=None, training={})
    week = ExperimentLog.from_frame(simulate(500, weeks=1, seed=9).log)
    risk, notes = job._risk_sources(week, None, None, (record, model), (record, model))
    assert risk is None
    assert notes == [
        "Where the risk comes from is left out: 2026-W40-s_lgbm-s0 has no risk model (it was "
        "trained before risk models existed; retrain it)."
    ]


def test_unknown_week_is_refused(tmp_path: Path) -> None:
    job = WeeklyJob(WeeklyConfig(store=tmp_path / "s.duckdb"))
    with pytest.raises(StoreError, match="holds no orders"):
        job.run()
    world = simulate(2000, weeks=1, seed=1, start_week="2026-W40")
    job.store.ingest(ExperimentLog.from_frame(world.log))
    with pytest.raises(
        ConfigError, match="no orders stored for week 2026-W01; weeks held: 2026-W40"
    ):
        job.run("2026-W01")


def test_ingest_command_is_idempotent_and_names_conflicts(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    world = simulate(3000, weeks=1, seed=3, start_week="2026-W40")
    log = write_table(world.log, tmp_path / "week.csv")
    store = tmp_path / "s.duckdb"
    first = uplift_cli("ingest", log, "--store", store)
    assert first.exit_code == 0, first.output
    assert "3,000 orders read, 3,000 new" in first.output
    again = uplift_cli("ingest", log, "--store", store, "--json", tmp_path / "i.json")
    assert "3,000 orders read, 0 new" in again.output
    assert json.loads((tmp_path / "i.json").read_text())["n_new"] == 0
    changed = world.log.assign(cancelled=1 - world.log["cancelled"]).drop(columns="revenue")
    bad = write_table(changed.iloc[:600], tmp_path / "bad.csv")
    result = uplift_cli("ingest", bad, "--store", store)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: 600 row(s): 1, 10, 100, 101, 102 and 595 more")
    assert "nothing of this log was written" in result.stderr


@pytest.mark.slow
def test_weekly_command_prints_the_report_path(
    uplift_cli: Callable[..., Any], steady: tuple[Path, list[WeeklyResult]], tmp_path: Path
) -> None:
    folder, _ = steady
    out = tmp_path / "reports"
    # The service's journal is imported first (decisions of orders not logged yet).
    journal = tmp_path / "serve.jsonl"
    decided = {"week": "2026-W50", "arm": "expedite", "propensity": 0.9, "model_id": "m"}
    journal.write_text(
        "".join(
            json.dumps({"decision_id": f"d{k}", "order_id": 999_000 + k, **decided}) + "\n"
            for k in range(2)
        )
    )
    result = uplift_cli(
        "weekly",
        "--store",
        folder / "uplift.duckdb",
        "--journal",
        journal,
        "--out",
        out,
        "--cost",
        "expedite=5",
        "--segment",
        "category",
        "--direction",
        "order_edits=down",
        "--json",
        tmp_path / "w.json",
    )
    assert result.exit_code == 0, result.output
    challenger = Store(folder / "uplift.duckdb").models()[-1].card
    assert challenger["training"]["directions"] == {"order_edits": "down"}
    assert f"{journal}: 2 new decisions imported" in result.output
    assert f"report: {out / '2026-W41' / 'index.html'}" in result.output
    assert "last week's predictions and the holdout: " in result.output
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["week"] == "2026-W41"
    assert data["files"]["html"] == str(out / "2026-W41" / "index.html")


@pytest.mark.slow
def test_demo_closes_the_loop_week_after_week_and_again_in_no_time(tmp_path: Path) -> None:
    assert demo.week_labels("2026-W52", 3) == ["2026-W52", "2026-W53", "2027-W01"]
    argv = ["--out", str(tmp_path), "--weeks", "3", "--orders", "6000"]
    assert demo.main(argv) == 0
    latest = tmp_path / "reports" / "2026-W42" / "index.html"
    assert latest.is_file()
    # Each week's truth beside its log, for scoring what the loop did; the same orders.
    week = tmp_path / "weeks" / "2026-W42.parquet"
    log, truth = pd.read_parquet(week), pd.read_parquet(demo.truth_path(week))
    assert truth["order_id"].tolist() == log["order_id"].tolist()
    assert {f"p_cancel_{arm}" for arm in ARM_COSTS} <= set(truth.columns)
    store = Store(tmp_path / "uplift.duckdb")
    assert list(store.reports()["week"]) == ["2026-W40", "2026-W41", "2026-W42"]
    # Two cold-start weeks: nothing ranked for the randomised second week.
    assert store.assignment("2026-W40").empty
    # The loop is closed: week 42's orders got the arms (and propensities) of the queue that
    # week 41's job ranked, holdout and exploration included.
    queue = store.assignment("2026-W41").set_index("order_id")
    given = queue.loc[log["order_id"].astype(str)]
    assert (given["arm"].to_numpy() == log["arm"].to_numpy()).all()
    np.testing.assert_allclose(given["propensity"], log["propensity"])
    assert given["holdout"].mean() == pytest.approx(demo.HOLDOUT, abs=0.02)
    assert (given["reason"] == "explore").mean() > 0.02
    assert len(store.assignment("2026-W42")) == 6000
    # Each ranked week leaves its capacity prices for the service to start its pacing from.
    assert set(store.prices("2026-W42")) == set(demo.CAPACITY)
    assert all(price >= 0 for price in store.prices("2026-W42").values())
    report = read_report(tmp_path / "reports" / "2026-W42")
    assert report.policy["arm"].iloc[-1] == "total"
    measured = report.policy["protected"].notna().to_numpy()[:-1]
    assert report.policy["acted"].iloc[:-1][measured].sum() == report.policy["acted"].iloc[-1]
    assert list(report.loop["week"]) == ["2026-W40", "2026-W41", "2026-W42"]
    assert report.loop["protected"].iloc[:2].isna().all()  # randomised weeks: no policy
    assert np.isfinite(report.loop[["protected", "true_protected", "oracle_value"]].iloc[2]).all()
    page = latest.read_text()
    assert "The policy against its holdout" in page
    assert "Against the simulation&#x27;s truth" in page or "simulation's truth" in page
    stamp = latest.stat().st_mtime_ns
    models = len(store.models())
    assert demo.main(argv) == 0
    # The second run finds every week done: nothing is simulated, trained or rewritten.
    assert latest.stat().st_mtime_ns == stamp
    assert len(store.models()) == models


def test_week_without_order_value_is_refused(tmp_path: Path) -> None:
    world = simulate(2000, weeks=1, seed=2, start_week="2026-W40")
    job = WeeklyJob(WeeklyConfig(store=tmp_path / "s.duckdb"))
    job.store.ingest(ExperimentLog.from_frame(world.log.drop(columns=["order_value", "revenue"])))
    with pytest.raises(SchemaError, match=r"\[2026-W40\]: the week's orders have no order_value"):
        job.run()


@pytest.mark.slow
def test_a_champion_folder_edited_after_registration_is_refused(
    steady: tuple[Path, list[WeeklyResult]],
) -> None:
    folder, _ = steady
    champion = Store(folder / "uplift.duckdb").champion(before="2026-W41")
    assert champion is not None
    assert champion.digest is not None
    copy = folder / "edited-model"
    shutil.copytree(champion.path, copy)
    edited = dataclasses.replace(champion, path=str(copy))
    load_registered(edited)  # an exact copy loads
    card = copy / "model_card.json"
    card.write_text(card.read_text().replace('"control"', '"control" ', 1))  # one space more
    with pytest.raises(ModelLoadError, match=r"changed since it was recorded"):
        load_registered(edited)
