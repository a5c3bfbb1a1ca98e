import pytest

from stratum.errors import InvalidRequest, NotFound
from stratum.evals.runner import ItemResult, RunResult
from stratum.evals.service import EvalService
from stratum.evals.stats import GateConfig
from stratum.evals.suites import parse_suite
from stratum.governance.audit import AuditService
from stratum.storage import Database

SUITE = parse_suite(
    [(n, {"id": f"q{n}", "prompt": f"问题{n}", "answer": "答"}) for n in range(1, 41)], name="qa"
)


def result(scores: list[float]) -> RunResult:
    return RunResult(items=[ItemResult(f"q{n}", "答", {"f1": s}) for n, s in enumerate(scores, start=1)])


def test_runs_are_stored_per_version_with_item_scores(db: Database) -> None:
    evals = EvalService(db)
    run = evals.record_run(model_ref="bot@1", suite=SUITE, result=result([1.0] * 20 + [0.0] * 20))
    assert run.metrics == {"f1": 0.5} and run.items == 40 and run.suite_digest == SUITE.digest
    assert evals.get_run(run.id) == run
    assert [r.id for r in evals.list_runs(model_ref="bot@1")] == [run.id]
    assert evals.list_runs(model_ref="bot@2") == []
    assert evals.item_scores(run.id, "f1")["q1"] == 1.0


def test_gate_decisions_are_recorded_and_audited(db: Database) -> None:
    evals = EvalService(db)
    base = evals.record_run(model_ref="bot@1", suite=SUITE, result=result([0.9] * 40))
    worse = evals.record_run(model_ref="bot@2", suite=SUITE, result=result([0.5] * 40))
    same = evals.record_run(model_ref="bot@3", suite=SUITE, result=result([0.9] * 40))
    failed, verdict = evals.gate(baseline_run=base.id, candidate_run=worse.id, config=GateConfig(metric="f1"))
    assert not failed.passed and not verdict.passed
    assert failed.detail["comparison"]["drop"] == pytest.approx(4 / 9)
    passed, _ = evals.gate(baseline_run=base.id, candidate_run=same.id, config=GateConfig(metric="f1"))
    assert passed.passed
    latest = evals.latest_gate("bot@2")
    assert latest is not None and latest.id == failed.id
    assert evals.latest_gate("bot@9") is None
    actions = [e.action for e in AuditService(db).list_entries()]
    assert actions.count("eval.run") == 3 and actions.count("eval.gate") == 2


def test_runs_of_different_suites_are_not_compared(db: Database) -> None:
    evals = EvalService(db)
    other = parse_suite([(1, {"id": "q1", "prompt": "别的", "answer": "答"})], name="other")
    a = evals.record_run(model_ref="bot@1", suite=SUITE, result=result([1.0] * 40))
    b = evals.record_run(
        model_ref="bot@2", suite=other, result=RunResult(items=[ItemResult("q1", "答", {"f1": 1.0})])
    )
    with pytest.raises(InvalidRequest, match="different suites"):
        evals.compare(baseline_run=a.id, candidate_run=b.id, metric="f1")
    with pytest.raises(InvalidRequest, match="no per-item 'bleu'"):
        evals.item_scores(a.id, "bleu")


def test_missing_runs_and_alias_refs_are_refused(db: Database) -> None:
    evals = EvalService(db)
    with pytest.raises(NotFound):
        evals.get_run(99)
    with pytest.raises(InvalidRequest, match="resolved version"):
        evals.record_run(model_ref="bot:prod", suite=SUITE, result=result([1.0] * 40))
