"""The weekly job: ingest, read out, retrain and compare, check last week, rank, report.

One run of :class:`WeeklyJob` does, for one ISO week ``W`` of the store:

1. ingest every new file of the inbox (files already ingested are skipped by content hash);
2. read out the week's holdout test (per arm, sample-ratio check, per segment);
3. train a challenger on the training window (the ``window`` weeks before ``W`` and a fixed
   70% of ``W``'s orders, by a hash of the order id); value it and the champion by
   doubly-robust policy value on the other 30% of ``W``, which neither has seen, and promote
   the challenger only when its value is higher;
4. check the champion that was in place during ``W`` (trained before it): its predicted uplift
   against what ``W``'s holdout measured, by arm and by decile;
5. rank the pending orders (when a file of them is given) with the champion into a queue;
6. with the champion in place during ``W`` (the first week: the model deployed after it),
   score the risk and its cause of ``W``'s orders and of the week before, and read out by
   cause what the arms did (:func:`uplift.reports.measures.risk_sources`);
7. write ``<out>/<W>/index.html``, ``report.md`` and ``report.json`` and record them.

Models are saved under ``<store folder>/models/<model id>/``. Model ids are deterministic, so
a week run again replaces its own records instead of adding new ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from uplift.data.files import table_output, write_outputs
from uplift.data.leaks import refuse_leaks
from uplift.data.log import CONTROL, ColumnMap, ExperimentLog, read_frame
from uplift.data.normalize import check_week
from uplift.data.project import Words
from uplift.exceptions import ConfigError, SchemaError, StoreError
from uplift.experiment.assignment import hash_unit
from uplift.experiment.holdout import (
    DECISION_COLUMNS,
    PolicyReadout,
    has_decisions,
    read_out_policy,
)
from uplift.experiment.metrics import QINI_RESAMPLES, uplift_metrics_by_arm
from uplift.experiment.offpolicy import PolicyComparison
from uplift.experiment.readout import Readout
from uplift.experiment.readout import readout as read_out
from uplift.loop.decisions import (
    complied_orders,
    exploration_words,
    explore_cost,
    explored_orders,
    loop_table,
    week_seed,
)
from uplift.loop.outcomes import JournalImport, import_journal, read_outcomes
from uplift.loop.store import DEFAULT_STORE, IngestResult, ModelRecord, Store, file_sha256
from uplift.loop.truth import read_truth, score_week
from uplift.models import load_model, model_digest, read_card, save_model, train_uplift
from uplift.models.contest import (
    SINGLE_ARM,
    TREAT_NONE,
    best_single_arm,
    compare_models,
    decide,
)
from uplift.models.effects import Effects
from uplift.models.uplift_model import UpliftModel
from uplift.policy.ranking import explain_queue, order_ids, rank_orders, with_risk
from uplift.reports import build_weekly_report, measures, save_report
from uplift.reports.results import LearnCheck, ModelChange, RiskSources, WeeklyReport

__all__ = [
    "DEFAULT_LEARNER",
    "WeeklyConfig",
    "WeeklyJob",
    "WeeklyResult",
    "load_registered",
    "run_weekly",
]

Progress = Callable[[str], None]
Deployed = tuple[ModelRecord, "UpliftModel"]
#: Text features with at most this many levels are read out per segment in the report.
MAX_SEGMENT_LEVELS = 12
#: The challenger's learner. The S-learner's policy keeps more of the oracle's net value than
#: the T-learner's in every cell of `benchmarks/bench_models.py --part grid` (realistic world,
#: 5 seeds: 57% against 46% from 200,000 orders, 40% against 23% from 20,000), in the easy
#: world (97% against 90%) and in the closed loop of the realistic world. ``auto``'s default, the
#: blend of it and the linear S-learner, kept less in the closed loop (28.5% of the oracle's
#: value in week 8, sd 8.1, against 32.7%, sd 7.0; weeks 4-7 32.4-32.8% against 34.0-35.9%:
#: `benchmarks/results/loop-s_blend.md` against `loop.md`, with the linear member's adapted
#: refit and the blend's stretch of its trees).
DEFAULT_LEARNER = "s_lgbm"
#: Share of the newest week kept out of training to compare champion and challenger.
EVAL_SHARE = 0.3
_SPLIT_SALT = "uplift-weekly-eval"


@dataclass(frozen=True)
class WeeklyConfig:
    """Options of the weekly job; ``costs`` and ``capacity`` are per arm (missing: 0 / none)."""

    store: Path = DEFAULT_STORE
    out: Path = Path("reports")
    inbox: Path | None = None
    pending: Path | None = None
    #: The service's decision journal, imported first (None: the one beside the store, if any).
    journal: Path | None = None
    costs: Mapping[str, float] = field(default_factory=dict)
    #: Known directions of numeric signals on the chance an order is kept (column -> up / down).
    directions: Mapping[str, str] = field(default_factory=dict)
    capacity: Mapping[str, float] = field(default_factory=dict)
    budget: float = math.inf
    holdout: float = 0.1
    explore: float = 0.0
    learner: str = DEFAULT_LEARNER
    window: int = 4
    seed: int = 0
    segments: tuple[str, ...] | None = None
    #: A simulation's truth files (``<week>.truth.parquet``): the report then also shows what
    #: the decisions were truly worth. Nothing the job decides reads them.
    truth_dir: Path | None = None
    #: How to read the inbox's logs and the pending orders (the project file's map).
    column_map: ColumnMap = field(default_factory=ColumnMap)
    control: str = CONTROL
    #: Features the leak guard keeps although they differ by arm.
    allow: tuple[str, ...] = ()
    #: Where to write the ranked queue too (it is always saved in the store).
    queue_out: Path | None = None
    currency: str = ""
    words: Words = field(default_factory=Words)


@dataclass(frozen=True, eq=False)
class WeeklyResult:
    """What one run of the weekly job did."""

    week: str
    report: WeeklyReport
    paths: dict[str, Path]
    champion_id: str
    promoted: bool
    ingested: tuple[IngestResult, ...]
    queue: pd.DataFrame | None
    journal: JournalImport | None = None


@dataclass(frozen=True, eq=False)
class _Contest:
    """Outcome of champion against challenger on the held-out orders of the week."""

    change: ModelChange
    values: pd.DataFrame
    qini: pd.DataFrame
    qini_summary: pd.DataFrame
    deployed: Deployed


def _quiet(_: str) -> None:
    return None


def ingest_inbox(
    store: Store,
    inbox: Path,
    progress: Progress = _quiet,
    *,
    column_map: ColumnMap | None = None,
    control: str = CONTROL,
    allow: tuple[str, ...] = (),
) -> list[IngestResult]:
    """Ingest every .csv / .parquet log of ``inbox`` whose content the store has not seen,
    read with ``column_map`` and ``control``; a log with a leaking feature is refused."""
    if not inbox.is_dir():
        raise ConfigError(f"{inbox}: inbox folder not found; create it or drop --inbox")
    seen = store.ingested_hashes()
    results = []
    for path in sorted(p for p in inbox.iterdir() if p.suffix in (".csv", ".parquet")):
        digest = file_sha256(path)
        if digest in seen:
            continue
        progress(f"ingesting {path.name}")
        log = read_outcomes(path, store, column_map=column_map, control=control)
        refuse_leaks(log, allow=allow)
        results.append(store.ingest(log, sha256=digest))
    return results


def eval_mask(order_ids: pd.Series, share: float = EVAL_SHARE) -> np.ndarray:
    """The orders kept out of training to compare models: a fixed share, by order-id hash."""
    return np.asarray(hash_unit(order_ids, _SPLIT_SALT) < share)


def value_models(
    evaluation: ExperimentLog, effects: Mapping[str, Effects], costs: Mapping[str, float]
) -> PolicyComparison:
    """Net revenue per order of each model's policy, treat-none and every arm, doubly robust.

    All policies share one outcome model (the first of ``effects``), so their paired
    differences measure the policies, not the outcome models.
    """
    frame = evaluation.frame
    first = next(iter(effects.values())).with_index(frame.index)
    mu = first.outcomes("revenue", frame["order_value"].to_numpy(np.float64))
    return compare_models(frame, effects, outcome="revenue", mu=mu, costs=costs)


def policy_value_rows(comparison: PolicyComparison, models: Sequence[str]) -> pd.DataFrame:
    """The report's policy rows: the models, treat-none and the best single arm."""
    values = comparison.versus(TREAT_NONE)
    best = best_single_arm(comparison)
    rows = values[values["policy"].isin([*models, TREAT_NONE, best])]
    rows = rows.assign(
        policy=rows["policy"].replace(best, "best single arm: " + best.removeprefix(SINGLE_ARM))
    )
    columns = ["policy", "value", "se", "ci_lower", "ci_upper", "diff"]
    columns += ["diff_ci_lower", "diff_ci_upper"]
    return rows[columns].reset_index(drop=True)


class WeeklyJob:
    """The steps of one week, sharing the store, the configuration and the progress callback."""

    def __init__(self, config: WeeklyConfig, progress: Progress = _quiet) -> None:
        self.config = config
        self.store = Store(config.store)
        self.say = progress
        self.models_dir = config.store.parent / "models"

    def run(self, week: str | None = None) -> WeeklyResult:
        """Run every step for ``week`` (default: the newest week in the store)."""
        cfg = self.config
        # The service's decisions first: the inbox's outcomes of served orders join them.
        journal = import_journal(self.store, cfg.journal)
        ingested = (
            tuple(
                ingest_inbox(
                    self.store,
                    cfg.inbox,
                    self.say,
                    column_map=cfg.column_map,
                    control=cfg.control,
                    allow=cfg.allow,
                )
            )
            if cfg.inbox
            else ()
        )
        week = self._week(week)
        weeks = [w for w in self.store.weeks() if w <= week][-cfg.window - 1 :]
        frame, compliance = complied_orders(self.store, weeks, week)
        control = self.store.control()
        current = frame[frame["week"] == week].reset_index(drop=True)
        decisions = current[list(DECISION_COLUMNS)]
        frame = frame.drop(columns=list(DECISION_COLUMNS))
        log = _as_log(
            current.drop(columns=list(DECISION_COLUMNS)), control, f"{self.store.path}[{week}]"
        )
        if not log.has_order_value:
            raise SchemaError(
                f"{log.source}: the week's orders have no order_value; the weekly job values "
                "policies in revenue, so ingest logs with the revenue at risk per order"
            )
        self.say(f"reading out {week}: {len(log):,} orders")
        readout, segments = self._readouts(log)
        before = self.store.champion(before=week)
        champion = (before, load_registered(before)) if before else None
        predicted = champion[1].predict_effects(log.frame) if champion else None
        decided = decisions if has_decisions(decisions) else None
        learn = self._learn(log, champion, predicted, decided)
        policy = self._policy_readout(log, decided, predicted)
        contest = self._compete(frame, week, log, champion, predicted, decided)
        queue, capacity = self._rank(contest.deployed, week)
        if queue is not None:
            self.store.save_assignment(week, contest.deployed[0].model_id, queue)
            # The service starts each week's pacing from the batch allocation's prices.
            prices = capacity.dropna(subset=["shadow_price"])
            self.store.save_prices(
                week,
                {
                    str(a): float(p)
                    for a, p in zip(prices["arm"], prices["shadow_price"], strict=True)
                },
            )
        previous = frame[frame["week"] < week]
        last = previous[previous["week"] == previous["week"].max()] if len(previous) else current
        risk, risk_notes = self._risk_sources(
            log, last if len(previous) else None, decided, champion, contest.deployed
        )
        loop_row = self._loop_row(week, log, decided, policy, predicted)
        loop = self._loop(week, loop_row)
        report = build_weekly_report(
            week=week,
            headline=(
                measures.policy_headline(policy, len(log))
                if policy is not None and not policy.by_arm.empty
                else measures.headline(log, cfg.costs)
            ),
            readout=readout,
            segments=segments,
            arm_values=measures.arm_value(log, cfg.costs),
            learn=learn,
            models=contest.change,
            qini=contest.qini,
            qini_summary=contest.qini_summary,
            policy_values=contest.values,
            capacity=capacity,
            mix=measures.mix_shift(last, current, log.features),
            base_rates=measures.base_rates(self.store.cancel_rates(control, through=week)),
            policy=policy,
            compliance=compliance,
            loop=loop,
            notes=risk_notes,
            currency=cfg.currency,
            outcome_words=cfg.words,
            risk=risk,
        )
        self.say(f"writing the report of {week}")
        paths = save_report(report, cfg.out / week)
        if queue is not None and cfg.queue_out is not None:
            write_outputs(table_output(queue, cfg.queue_out))
            paths["queue"] = cfg.queue_out
        self.store.record_report(week, paths["html"], {**asdict(report.headline), "loop": loop_row})
        return WeeklyResult(
            week,
            report,
            paths,
            contest.deployed[0].model_id,
            contest.change.promoted,
            ingested,
            queue,
            journal,
        )

    def _week(self, week: str | None) -> str:
        weeks = self.store.weeks()
        if not weeks:
            raise StoreError(f"{self.store.path}: the store holds no orders; ingest a log first")
        if week is None:
            return weeks[-1]
        if check_week(week) not in weeks:
            raise ConfigError(
                f"{self.store.path}: no orders stored for week {week}; weeks held: "
                f"{', '.join(weeks)}"
            )
        return week

    def _readouts(self, log: ExperimentLog) -> tuple[Readout, list[Readout]]:
        """The week's readout, and one per segment column (text features with few levels)."""
        columns = self.config.segments
        if columns is None:
            columns = tuple(
                c
                for c in log.features
                if not pd.api.types.is_numeric_dtype(log.frame[c])
                and log.frame[c].nunique() <= MAX_SEGMENT_LEVELS
            )
        return read_out(log), [read_out(log, segment=c) for c in columns]

    def _learn(
        self,
        log: ExperimentLog,
        champion: Deployed | None,
        predicted: Effects | None,
        decisions: pd.DataFrame | None,
    ) -> LearnCheck | None:
        """The predictions of the champion in place during the week against its holdout."""
        if champion is None or predicted is None:
            return None
        record = champion[0]
        self.say(f"checking {record.model_id} against the holdout")
        return measures.learn_check(
            log,
            predicted.uplift("retained"),
            model_id=record.model_id,
            trained_through=record.week,
            train_orders=int(record.card["training"]["orders"]),
            decisions=decisions,
        )

    def _policy_readout(
        self, log: ExperimentLog, decisions: pd.DataFrame | None, predicted: Effects | None
    ) -> PolicyReadout | None:
        """The policy's decisions of the week against its holdout, with what it predicted."""
        if decisions is None:
            return None
        uplift = revenue = None
        if predicted is not None:
            uplift = predicted.uplift("retained").set_axis(log.frame.index)
            if predicted.revenue is not None:
                revenue = predicted.uplift("revenue").set_axis(log.frame.index)
        return read_out_policy(
            pd.concat([log.frame, decisions.set_axis(log.frame.index)], axis=1),
            control=log.control,
            costs=self.config.costs,
            predicted_uplift=uplift,
            predicted_revenue=revenue,
        )

    def _risk_sources(
        self,
        log: ExperimentLog,
        last: pd.DataFrame | None,
        decisions: pd.DataFrame | None,
        champion: Deployed | None,
        deployed: Deployed,
    ) -> tuple[RiskSources | None, list[str]]:
        """Where the week's risk comes from, by the champion in place during the week (the
        first week: the model deployed after it), or why the report leaves it out."""
        record, model = champion or deployed
        note = ""
        if champion is None:
            note = (
                "No model was in place before this week, so the risk is that of the model "
                "deployed after it, trained on part of this week's orders: this week's figures "
                "are partly in-sample."
            )
        if model.risk_model is None:
            reason = model.training.get("risk_absent") or (
                "no risk model (it was trained before risk models existed; retrain it)"
            )
            return None, [f"Where the risk comes from is left out: {record.model_id} has {reason}."]
        if not log.has_retained:
            return None, [
                "Where the risk comes from is left out: the week's log has no 0/1 outcome "
                "(retained or cancelled) to read the risk against."
            ]
        self.say(f"scoring the risk of the week's orders with {record.model_id}")
        risk = model.predict_risk(log.frame)
        scored, last_week = None, ""
        if last is not None and len(last):
            scored = pd.concat([last[["order_value"]], model.predict_risk(last)], axis=1)
            last_week = str(last["week"].iloc[0])
        calibration = model.risk_model.report
        return (
            measures.risk_sources(
                log,
                risk,
                scored,
                model_id=record.model_id,
                model_note=note,
                last_week=last_week,
                decisions=decisions,
                costs=self.config.costs,
                calibration=calibration.curve,
                ece=calibration.ece,
                method=calibration.method,
            ),
            [],
        )

    def _loop_row(
        self,
        week: str,
        log: ExperimentLog,
        decisions: pd.DataFrame | None,
        policy: PolicyReadout | None,
        predicted: Effects | None,
    ) -> dict[str, object]:
        """This week's point of the loop over time (see ``WeeklyReport.loop``)."""
        row: dict[str, object] = {"week": week}
        if policy is not None and not policy.by_arm.empty:
            total, arms = policy.total, policy.by_arm
            row |= {
                "protected": total["protected"],
                "se": total["protected_se"],
                "predicted": total["predicted_protected"],
                "holdout_cost": float((arms["held"] * arms["net_per_order"]).sum()),
                "explore_cost": explore_cost(log, decisions, predicted, self.config.costs),
            }
        if self.config.truth_dir is not None:
            truth = read_truth(self.config.truth_dir, week)
            if truth is not None:
                frame = log.frame
                if decisions is not None:
                    frame = pd.concat([frame, decisions.set_axis(frame.index)], axis=1)
                measured = None if policy is None else list(policy.by_arm["arm"])
                row |= score_week(
                    frame,
                    truth,
                    costs=self.config.costs,
                    capacity=self.config.capacity,
                    measured=measured,
                )
        return row

    def _loop(self, week: str, row: Mapping[str, object]) -> pd.DataFrame:
        """The loop's weeks so far: earlier reports' points, then this week's, cumulated."""
        earlier = self.store.reports()
        rows = [
            json.loads(h)["loop"]
            for w, h in zip(earlier["week"], earlier["headline"], strict=True)
            if w < week and "loop" in json.loads(h)
        ]
        return loop_table([*rows, dict(row)])

    def _compete(
        self,
        frame: pd.DataFrame,
        week: str,
        log: ExperimentLog,
        champion: Deployed | None,
        predicted: Effects | None,
        decisions: pd.DataFrame | None = None,
    ) -> _Contest:
        """Train the challenger, value both on the held-out part of the week, promote or keep.

        ``predicted`` holds the champion's effects for every order of the week; ``decisions``
        the policy's (aligned with the week's orders) when a queue decided them.
        """
        held_out = eval_mask(log.frame["order_id"])
        evaluation = log.subset(held_out)
        challenger = self._train_challenger(frame, week, log.control)
        model_id = f"{week}-{challenger.learner}-s{self.config.seed}"
        effects = {"challenger": challenger.predict_effects(evaluation.frame)}
        if predicted is not None:
            effects["champion"] = predicted.subset(held_out).with_index(evaluation.frame.index)
        self.say(f"valuing the policies on {len(evaluation):,} held-out orders")
        comparison = value_models(evaluation, effects, self.config.costs)
        verdict = decide(comparison, model_id, champion[0].model_id if champion else None)
        values = comparison.versus(TREAT_NONE).drop(columns="estimator").set_index("policy")
        record = self._register(challenger, model_id, week, values, verdict.promoted)
        roles = [("challenger", record)] + ([("champion", champion[0])] if champion else [])
        deployed = (record, challenger) if verdict.promoted or champion is None else champion
        winner = effects["challenger" if deployed[0] is record else "champion"]
        reason = verdict.reason
        if champion is not None and decisions is not None:
            explored = explored_orders(evaluation, decisions[held_out].reset_index(drop=True))
            reason += exploration_words(comparison, explored)
        change = ModelChange(
            _change_table(roles, values),
            verdict.diff,
            verdict.diff_se,
            verdict.promoted,
            reason,
        )
        return _Contest(
            change=change,
            values=policy_value_rows(comparison, list(effects)),
            qini=measures.qini_points(evaluation, winner.uplift("retained")),
            qini_summary=_qini_summary(evaluation, winner),
            deployed=deployed,
        )

    def _train_challenger(self, frame: pd.DataFrame, week: str, control: str) -> UpliftModel:
        """The challenger: trained on the window and the part of ``week`` kept for training."""
        cfg = self.config
        held = frame["week"].eq(week).to_numpy() & eval_mask(frame["order_id"])
        train = _as_log(frame[~held], control, f"{self.store.path}[training]")
        return train_uplift(
            train,
            learner=cfg.learner,
            costs=cfg.costs,
            seed=cfg.seed,
            progress=self.say,
            directions=cfg.directions,
        )

    def _register(
        self,
        model: UpliftModel,
        model_id: str,
        week: str,
        values: pd.DataFrame,
        promoted: bool,
    ) -> ModelRecord:
        """Save the challenger and add it to the store's registry."""
        value, value_se = values.loc["challenger", ["value", "se"]].to_numpy(np.float64)
        path = save_model(
            model,
            self.models_dir / model_id,
            metrics={
                "week": week,
                "policy_value_dr": float(value),
                "policy_value_se": float(value_se),
            },
        )
        record = ModelRecord(
            model_id=model_id,
            week=week,
            learner=model.learner,
            path=str(path),
            card=read_card(path),
            policy_value=float(value),
            policy_value_se=float(value_se),
            promoted_week=week if promoted else None,
            digest=model_digest(path),
        )
        self.store.register_model(record)
        return record

    def _rank(self, deployed: Deployed, week: str) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        """Rank the pending orders with the deployed model: the queue and its capacity use."""
        cfg = self.config
        if cfg.pending is None:
            return None, pd.DataFrame(columns=["arm", "capacity", "used", "shadow_price"])
        raw = read_frame(cfg.pending)
        orders = cfg.column_map.to_orders(raw).apply(raw, str(cfg.pending))
        self.say(f"ranking {len(orders):,} pending orders with {deployed[0].model_id}")
        effects = deployed[1].predict_effects(orders)
        if "order_id" in orders.columns:
            effects = effects.with_order_ids(orders["order_id"])
        assignment = rank_orders(
            effects,
            costs=cfg.costs,
            capacity=cfg.capacity,
            budget=cfg.budget if math.isfinite(cfg.budget) else None,
            holdout=cfg.holdout,
            explore=cfg.explore,
            seed=week_seed(cfg.seed, week),
            control=deployed[1].control,
        )
        summary = assignment.summary.iloc[1:]  # the control arm first: it has no capacity
        capacity = pd.DataFrame(
            {
                "arm": summary["arm"],
                "capacity": summary["capacity"],
                "used": summary["orders"],
                "shadow_price": summary["shadow_price"],
            }
        )
        model = deployed[1]
        queue = explain_queue(assignment, orders[list(model.features)], effects, cfg.costs)
        if model.risk_model is not None:
            queue = with_risk(queue, model.predict_risk(orders), order_ids(effects))
        return queue, capacity.reset_index(drop=True)


def _as_log(frame: pd.DataFrame, control: str, source: str) -> ExperimentLog:
    rows = frame.drop(columns="week").reset_index(drop=True)
    return ExperimentLog.from_frame(rows, control=control, source=source)


def load_registered(record: ModelRecord) -> UpliftModel:
    """The model of a registry record, refused when its folder changed since registration."""
    # The digest recorded at registration: a model folder edited since is refused.
    return load_model(record.path, digest=record.digest)


def _change_table(roles: Sequence[tuple[str, ModelRecord]], values: pd.DataFrame) -> pd.DataFrame:
    rows = [
        {
            "role": role,
            "model_id": record.model_id,
            "learner": record.learner,
            "trained_in": record.week,
            "train_orders": record.card["training"]["orders"],
            "policy_value": values.at[role, "value"],
            "ci_lower": values.at[role, "ci_lower"],
            "ci_upper": values.at[role, "ci_upper"],
        }
        for role, record in roles
    ]
    return pd.DataFrame(rows)


def _qini_summary(log: ExperimentLog, effects: Effects) -> pd.DataFrame:
    uplift = effects.uplift("retained").set_axis(log.frame.index)
    return uplift_metrics_by_arm(uplift, log.frame, control=log.control, resamples=QINI_RESAMPLES)


def run_weekly(
    config: WeeklyConfig, week: str | None = None, progress: Progress = _quiet
) -> WeeklyResult:
    """Run the weekly job for ``week`` (default: the newest week in the store)."""
    return WeeklyJob(config, progress).run(week)
