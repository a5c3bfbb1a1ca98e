"""Scheduled re-evaluation of production aliases, drop flags and data backflow.

A schedule names ``NAME:ALIAS`` (resolved at each run, so it follows the alias), a suite (a JSONL
file or a dataset split), a metric and the largest allowed relative drop. ``run_due`` evaluates
every schedule whose time has come, compares the metric with the schedule's previous run, and when
it dropped by more than ``max_drop``: flags the schedule, writes an ``eval.schedule.flag`` audit
entry and builds a backflow dataset from recent low-scored feedback that carries a correction.

Backflow (when the schedule's ``backflow`` is on) is ``stratum.data.feedback.build``: the gateway
keeps each chat response's guard-masked prompt and answer with its feedback, so a correction becomes
a (prompt → corrected answer) row and a bare thumbs-down a row queued for review. Feedback whose
prompt was not kept can still be given one through ``prompts`` (response id → prompt text or chat
messages, e.g. from the client's own request log); the rest are counted as ``missing_prompt``.

Two ways to run: ``run_due`` evaluates due schedules in this process (``stratum eval schedule
run-due``); ``claim_due`` + an ``eval`` job per schedule is what workers do every
``STRATUM_EVAL_SCHEDULE_POLL`` seconds (``evals.trigger``): the claim moves ``next_due_at`` in one
conditional UPDATE, so of several workers exactly one queues the run, and the job calls ``record``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update

from stratum.errors import InvalidRequest, NotFound
from stratum.evals.service import LOWER_IS_BETTER, EvalRun, EvalService
from stratum.evals.tables import EvalScheduleRow
from stratum.governance import audit
from stratum.storage import Database, utcnow

_EVERY = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# Feedback at or below this score counts as low-scored for backflow.
LOW_SCORE = 0.5

# (schedule, suite) → the stored run; the default answers with the version the alias names now.
Evaluate = Callable[["Schedule", Any], EvalRun]


def parse_every(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` → seconds."""
    match = _EVERY.match(text.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise InvalidRequest(
            f"--every is a number and a unit (s, m, h, d, w), e.g. 7d; got {text!r}", param="every"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


class Schedule(BaseModel):
    id: int
    model: str
    suite_path: str | None
    dataset_ref: str | None
    split: str | None
    metric: str
    max_drop: float
    every_s: int
    next_due_at: datetime
    last_run_id: int | None
    flagged: bool
    flag_reason: str | None
    backflow_dataset: str | None
    backflow: bool = True
    actor: str
    created_at: datetime


class ScheduleOutcome(BaseModel):
    schedule: Schedule
    run: EvalRun
    previous: float | None
    current: float
    drop: float | None
    flagged: bool
    backflow_rows: int = 0
    missing_prompt: int = 0


def _public(row: EvalScheduleRow) -> Schedule:
    return Schedule.model_validate(row, from_attributes=True)


def relative_drop(previous: float, current: float, metric: str) -> float:
    """How much worse ``current`` is than ``previous``, relative (negative: it improved)."""
    if metric in LOWER_IS_BETTER:
        previous, current = -previous, -current
    if previous == 0:
        return 0.0 if current >= 0 else 1.0
    return (previous - current) / abs(previous)


class ScheduleService:
    def __init__(self, db: Database, settings: Any) -> None:
        self._db = db
        self._settings = settings

    def add(
        self,
        *,
        model: str,
        suite_path: str | None = None,
        dataset_ref: str | None = None,
        split: str | None = "test",
        every: str = "7d",
        metric: str = "f1",
        max_drop: float = 0.03,
        first_due: datetime | None = None,
        backflow: bool = True,
        actor: str = audit.LOCAL_ACTOR,
    ) -> Schedule:
        """``first_due``: when the first run is due (default: now, i.e. the next ``run-due``)."""
        name, sep, alias = model.partition(":")
        if not sep or not name or not alias:
            raise InvalidRequest("schedule an alias, NAME:ALIAS (it is resolved at each run)", param="model")
        if (suite_path is None) == (dataset_ref is None):
            raise InvalidRequest("give exactly one of a suite file or a dataset", param="suite")
        if not 0 <= max_drop < 1:
            raise InvalidRequest("max_drop is a fraction in [0, 1), e.g. 0.03", param="max_drop")
        every_s = parse_every(every)
        with self._db.session() as session:
            row = EvalScheduleRow(
                model=model,
                suite_path=suite_path,
                dataset_ref=dataset_ref,
                split=split if dataset_ref is not None else None,
                metric=metric,
                max_drop=max_drop,
                every_s=every_s,
                next_due_at=first_due or utcnow(),
                flagged=False,
                backflow=backflow,
                actor=actor,
            )
            session.add(row)
            session.flush()
            audit.append(
                session, actor=actor, action="eval.schedule.add", target=model, detail={"schedule": row.id}
            )
            return _public(row)

    def list(self) -> list[Schedule]:
        with self._db.session(write=False) as session:
            return [_public(r) for r in session.scalars(select(EvalScheduleRow).order_by(EvalScheduleRow.id))]

    def get(self, schedule_id: int) -> Schedule:
        with self._db.session(write=False) as session:
            row = session.get(EvalScheduleRow, schedule_id)
            if row is None:
                raise NotFound(f"eval schedule {schedule_id} does not exist", param="schedule")
            return _public(row)

    def remove(self, schedule_id: int, *, actor: str = audit.LOCAL_ACTOR) -> None:
        with self._db.session() as session:
            row = session.get(EvalScheduleRow, schedule_id)
            if row is None:
                raise NotFound(f"eval schedule {schedule_id} does not exist", param="schedule")
            audit.append(
                session,
                actor=actor,
                action="eval.schedule.remove",
                target=row.model,
                detail={"schedule": row.id},
            )
            session.delete(row)

    def suite(self, schedule: Schedule) -> tuple[Any, str | None]:
        from pathlib import Path

        if schedule.suite_path is not None:
            from stratum.evals.suites import load_suite

            return load_suite(Path(schedule.suite_path)), None
        from stratum.data import DatasetService
        from stratum.evals.datasets import dataset_suite

        assert schedule.dataset_ref is not None
        return dataset_suite(
            DatasetService(self._db, self._settings), schedule.dataset_ref, split=schedule.split
        )

    def due(self, now: datetime | None = None) -> list[Schedule]:
        now = now or utcnow()
        return [s for s in self.list() if _aware(s.next_due_at) <= now]

    def claim_due(self, now: datetime | None = None) -> list[Schedule]:
        """Take the due schedules for this caller: each is moved to its next due time by a
        conditional UPDATE (still due?), so concurrent callers never both get the same one."""
        now = now or utcnow()
        claimed = []
        for schedule in self.due(now):
            with self._db.session() as session:
                result = session.execute(
                    update(EvalScheduleRow)
                    .where(EvalScheduleRow.id == schedule.id, EvalScheduleRow.next_due_at <= now)
                    .values(next_due_at=now + timedelta(seconds=schedule.every_s))
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(schedule)
        return claimed

    def run_due(
        self,
        *,
        now: datetime | None = None,
        evaluate: Evaluate | None = None,
        prompts: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> list[ScheduleOutcome]:
        """Evaluate every due schedule; one failing schedule does not stop the others (it raises
        after the rest ran, naming the failures)."""
        now = now or utcnow()
        outcomes, failures = [], []
        for schedule in self.due(now):
            try:
                outcomes.append(
                    self.run_one(schedule, now=now, evaluate=evaluate, prompts=prompts, actor=actor)
                )
            except InvalidRequest as error:
                failures.append(f"schedule {schedule.id} ({schedule.model}): {error.message}")
        if failures:
            raise InvalidRequest("; ".join(failures), param="schedule")
        return outcomes

    def run_one(
        self,
        schedule: Schedule,
        *,
        now: datetime | None = None,
        evaluate: Evaluate | None = None,
        prompts: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> ScheduleOutcome:
        now = now or utcnow()
        suite, dataset_ref = self.suite(schedule)
        if evaluate is None:
            evaluate = self._default_evaluate(dataset_ref, actor)
        run = evaluate(schedule, suite)
        return self.record(schedule, run, now=now, prompts=prompts, actor=actor, reschedule=True)

    def record(
        self,
        schedule: Schedule,
        run: EvalRun,
        *,
        now: datetime | None = None,
        prompts: Mapping[str, Any] | None = None,
        actor: str = "system",
        reschedule: bool = False,
    ) -> ScheduleOutcome:
        """Compare ``run`` with the schedule's previous run; flag a drop beyond ``max_drop`` (and
        build the backflow dataset when the schedule says so). ``reschedule``: also set the next
        due time (a claimed schedule already has it)."""
        now = now or utcnow()
        if schedule.metric not in run.metrics:
            raise InvalidRequest(f"run {run.id} has no {schedule.metric!r} metric", param="metric")
        current = float(run.metrics[schedule.metric])
        previous = drop = None
        if schedule.last_run_id is not None:
            before = EvalService(self._db).get_run(schedule.last_run_id)
            if schedule.metric in before.metrics:
                previous = float(before.metrics[schedule.metric])
                drop = relative_drop(previous, current, schedule.metric)
        flagged = drop is not None and drop > schedule.max_drop
        backflow_ref, rows, missing = None, 0, 0
        if flagged and schedule.backflow:
            backflow_ref, rows, missing = self.backflow(
                schedule, run, prompts or {}, since=now - timedelta(seconds=schedule.every_s), actor=actor
            )
        with self._db.session() as session:
            row = session.get(EvalScheduleRow, schedule.id)
            if row is None:
                raise NotFound(f"eval schedule {schedule.id} was removed", param="schedule")
            row.last_run_id = run.id
            if reschedule:
                row.next_due_at = now + timedelta(seconds=schedule.every_s)
            if drop is not None:
                row.flagged = flagged
                row.flag_reason = None
            if flagged:
                assert drop is not None and previous is not None
                row.flag_reason = (
                    f"{schedule.metric} {previous:.4f} → {current:.4f} ({run.model_ref}): "
                    f"drop {drop:.1%} > {schedule.max_drop:.1%}; backflow: {rows} row(s)"
                    + (f", {missing} low-scored correction(s) without a known prompt" if missing else "")
                )
                row.backflow_dataset = backflow_ref
                audit.append(
                    session,
                    actor=actor,
                    action="eval.schedule.flag",
                    target=run.model_ref,
                    detail={
                        "schedule": schedule.id,
                        "run": run.id,
                        "metric": schedule.metric,
                        "previous": previous,
                        "current": current,
                        "drop": drop,
                        "backflow_dataset": backflow_ref,
                        "backflow_rows": rows,
                        "missing_prompt": missing,
                    },
                )
            saved = _public(row)
        return ScheduleOutcome(
            schedule=saved,
            run=run,
            previous=previous,
            current=current,
            drop=drop,
            flagged=flagged,
            backflow_rows=rows,
            missing_prompt=missing,
        )

    def backflow(
        self, schedule: Schedule, run: EvalRun, prompts: Mapping[str, Any], *, since: datetime, actor: str
    ) -> tuple[str | None, int, int]:
        """A chat dataset of (prompt → the user's correction) from recent low-scored feedback.

        Returns (dataset ref, or None when no row could be built; rows; corrections lacking a prompt).
        """
        from stratum.data import DatasetService
        from stratum.data import feedback as feedback_data
        from stratum.registry.feedback import FeedbackService

        name = schedule.model.partition(":")[0]
        made = feedback_data.build(
            DatasetService(self._db, self._settings),
            FeedbackService(self._db),
            name=f"{name}-backflow",
            model=name,
            since=since,
            max_score=LOW_SCORE,
            prompts=prompts,
            source=f"schedule {schedule.id}, run {run.id}",
            actor=actor,
        )
        ref = made.version.ref if made.version is not None else None
        return ref, made.corrections + made.review, made.missing_prompt

    def _default_evaluate(self, dataset_ref: str | None, actor: str) -> Evaluate:
        from stratum.evals.job import evaluate

        def run(schedule: Schedule, suite: Any) -> EvalRun:
            metrics = None if schedule.metric in ("accuracy", "nll") else [schedule.metric]
            result: EvalRun = evaluate(
                self._db,
                self._settings,
                model=schedule.model,
                suite=suite,
                dataset_ref=dataset_ref,
                metrics=metrics,
                actor=actor,
            )
            return result

        return run


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
