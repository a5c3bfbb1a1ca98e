"""Eval runs stored per model version, paired comparison of two runs, and gate decisions.

Serves: ``stratum eval run|list|show|compare|gate`` and, for releases, ``latest_gate(candidate)``.
Running a suite needs an engine, which the caller builds (the CLI from the registry version); this
service only stores and compares.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from stratum.errors import InvalidRequest, NotFound
from stratum.evals.runner import RunResult
from stratum.evals.stats import GateConfig, GateVerdict, PairedComparison, gate, paired_bootstrap
from stratum.evals.suites import Suite
from stratum.evals.tables import EvalItemRow, EvalRunRow, GateResultRow
from stratum.governance import audit
from stratum.registry import lineage
from stratum.storage import Database

# Metrics where lower is better: the gate compares their negation.
LOWER_IS_BETTER = frozenset({"nll", "perplexity"})


class EvalRun(BaseModel):
    id: int
    model_ref: str
    suite: str
    suite_kind: str
    suite_digest: str
    items: int
    metrics: dict[str, float]
    seconds: float
    actor: str
    created_at: datetime


class GateResult(BaseModel):
    id: int
    candidate_ref: str
    baseline_ref: str
    metric: str
    passed: bool
    reason: str
    detail: dict[str, Any]
    created_at: datetime


def _run(row: EvalRunRow) -> EvalRun:
    return EvalRun.model_validate(row, from_attributes=True)


def _gate(row: GateResultRow) -> GateResult:
    return GateResult.model_validate(row, from_attributes=True)


class EvalService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record_run(
        self,
        *,
        model_ref: str,
        suite: Suite,
        result: RunResult,
        actor: str = audit.LOCAL_ACTOR,
        dataset_ref: str | None = None,
    ) -> EvalRun:
        """Store a run; lineage records model → eval ("evaluated") and dataset → eval ("evaluated_on")."""
        if "@" not in model_ref:
            raise InvalidRequest(
                "record runs against a resolved version (NAME@V), not an alias", param="model"
            )
        with self._db.session() as session:
            row = EvalRunRow(
                model_ref=model_ref,
                suite=suite.name,
                suite_kind=suite.kind,
                suite_digest=suite.digest,
                items=len(result.items),
                metrics=result.means(),
                seconds=result.seconds,
                actor=actor,
            )
            session.add(row)
            session.flush()
            session.add_all(
                EvalItemRow(run_id=row.id, item_id=i.item_id, output=i.output, scores=i.scores, error=i.error)
                for i in result.items
            )
            audit.append(
                session,
                actor=actor,
                action="eval.run",
                target=model_ref,
                detail={"run": row.id, "suite": suite.name, "metrics": row.metrics},
            )
            target = ("eval", str(row.id))
            lineage.add_edge(
                session, source=("model", model_ref), target=target, relation="evaluated", actor=actor
            )
            if dataset_ref is not None:
                lineage.add_edge(
                    session,
                    source=("dataset", dataset_ref),
                    target=target,
                    relation="evaluated_on",
                    actor=actor,
                )
            return _run(row)

    def get_run(self, run_id: int) -> EvalRun:
        with self._db.session(write=False) as session:
            row = session.get(EvalRunRow, run_id)
            if row is None:
                raise NotFound(f"eval run {run_id} does not exist", param="run")
            return _run(row)

    def list_runs(self, *, model_ref: str | None = None, suite: str | None = None) -> list[EvalRun]:
        query = select(EvalRunRow).order_by(EvalRunRow.id)
        if model_ref is not None:
            query = query.where(EvalRunRow.model_ref == model_ref)
        if suite is not None:
            query = query.where(EvalRunRow.suite == suite)
        with self._db.session(write=False) as session:
            return [_run(row) for row in session.execute(query).scalars()]

    def item_scores(self, run_id: int, metric: str) -> dict[str, float]:
        self.get_run(run_id)
        with self._db.session(write=False) as session:
            rows = session.execute(select(EvalItemRow).where(EvalItemRow.run_id == run_id)).scalars()
            scores = {row.item_id: row.scores.get(metric) for row in rows}
        if any(value is None for value in scores.values()):
            raise InvalidRequest(f"run {run_id} has no per-item {metric!r} scores", param="metric")
        return {k: float(v) for k, v in scores.items() if v is not None}

    def compare(
        self, *, baseline_run: int, candidate_run: int, metric: str, seed: int = 0
    ) -> PairedComparison:
        base, cand = self.get_run(baseline_run), self.get_run(candidate_run)
        if base.suite_digest != cand.suite_digest:
            raise InvalidRequest(
                f"runs {baseline_run} and {candidate_run} answered different suites "
                f"({base.suite}#{base.suite_digest} vs {cand.suite}#{cand.suite_digest})",
                param="run",
            )
        base_scores, cand_scores = (
            self.item_scores(baseline_run, metric),
            self.item_scores(candidate_run, metric),
        )
        ids = sorted(base_scores)
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        return paired_bootstrap(
            [sign * base_scores[i] for i in ids], [sign * cand_scores[i] for i in ids], seed=seed
        )

    def gate(
        self, *, baseline_run: int, candidate_run: int, config: GateConfig, actor: str = audit.LOCAL_ACTOR
    ) -> tuple[GateResult, GateVerdict]:
        """Decide and record the gate; the newest decision for a candidate is what releases read."""
        comparison = self.compare(
            baseline_run=baseline_run, candidate_run=candidate_run, metric=config.metric
        )
        verdict = gate(config, comparison)
        base, cand = self.get_run(baseline_run), self.get_run(candidate_run)
        with self._db.session() as session:
            row = GateResultRow(
                candidate_ref=cand.model_ref,
                baseline_ref=base.model_ref,
                candidate_run_id=candidate_run,
                baseline_run_id=baseline_run,
                metric=config.metric,
                passed=verdict.passed,
                reason=verdict.reason,
                detail={"config": asdict(config), "comparison": asdict(comparison)},
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="eval.gate",
                target=cand.model_ref,
                detail={"passed": verdict.passed, "baseline": base.model_ref, "reason": verdict.reason},
            )
            return _gate(row), verdict

    def latest_gate(self, candidate_ref: str) -> GateResult | None:
        query = (
            select(GateResultRow)
            .where(GateResultRow.candidate_ref == candidate_ref)
            .order_by(GateResultRow.id.desc())
            .limit(1)
        )
        with self._db.session(write=False) as session:
            row = session.execute(query).scalar_one_or_none()
            return None if row is None else _gate(row)
