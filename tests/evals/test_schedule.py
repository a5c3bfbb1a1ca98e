"""Scheduled re-evaluation: due schedules, drop flags, audit and feedback backflow."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from stratum.data import DatasetService
from stratum.errors import InvalidRequest
from stratum.evals.runner import ItemResult, RunResult
from stratum.evals.schedule import Schedule, ScheduleService, parse_every, relative_drop
from stratum.evals.service import EvalRun, EvalService
from stratum.governance.audit import AuditService
from stratum.registry.feedback import FeedbackService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.settings import Settings
from stratum.storage import Database, utcnow


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "客服.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "prompt": f"问{i}", "answer": "答"}, ensure_ascii=False)
            for i in range(4)
        ),
        encoding="utf-8",
    )
    return path


def _scripted(db: Database, f1_means: list[float]):  # type: ignore[no-untyped-def]
    """An evaluator whose runs score the given mean f1, one per call (stored for real)."""
    values = iter(f1_means)

    def evaluate(schedule: Schedule, suite) -> EvalRun:  # type: ignore[no-untyped-def]
        value = next(values)
        items = [ItemResult(i.id, "答", {"f1": value}) for i in suite.items]
        return EvalService(db).record_run(model_ref="bot@1", suite=suite, result=RunResult(items=items))

    return evaluate


def test_parse_every_and_relative_drop() -> None:
    assert parse_every("7d") == 7 * 86_400 and parse_every("12h") == 43_200 and parse_every("2w") == 1_209_600
    with pytest.raises(InvalidRequest, match=r"e\.g\. 7d"):
        parse_every("每周")
    assert relative_drop(0.8, 0.76, "f1") == pytest.approx(0.05)
    assert relative_drop(0.8, 0.9, "f1") < 0
    assert relative_drop(10.0, 11.0, "perplexity") == pytest.approx(0.1)


def test_add_validates(db: Database, tmp_path: Path) -> None:
    schedules = ScheduleService(db, Settings())
    with pytest.raises(InvalidRequest, match="NAME:ALIAS"):
        schedules.add(model="bot@1", suite_path=str(_suite(tmp_path)))
    with pytest.raises(InvalidRequest, match="exactly one"):
        schedules.add(model="bot:prod")
    made = schedules.add(model="bot:prod", suite_path=str(_suite(tmp_path)), every="7d", metric="f1")
    assert made.every_s == 604_800 and not made.flagged and schedules.list() == [made]


def test_a_drop_beyond_max_drop_flags_audits_and_backflows(db: Database, tmp_path: Path) -> None:
    settings = Settings()
    schedules = ScheduleService(db, settings)
    now = utcnow() - timedelta(days=14)  # the third run is today, after the feedback arrived
    made = schedules.add(
        model="bot:prod", suite_path=str(_suite(tmp_path)), every="7d", max_drop=0.03, first_due=now
    )
    evaluate = _scripted(db, [0.80, 0.79, 0.70])

    [first] = schedules.run_due(now=now, evaluate=evaluate)
    assert first.previous is None and not first.flagged
    assert schedules.run_due(now=now + timedelta(days=1), evaluate=evaluate) == []  # not due yet

    [second] = schedules.run_due(now=now + timedelta(days=7), evaluate=evaluate)
    assert second.drop == pytest.approx(0.0125) and not second.flagged  # 1.25% ≤ 3%

    # Low-scored feedback with corrections: one response's prompt is known, one is not.
    log = ResponseLog(db)
    for response_id in ("resp-1", "resp-2", "resp-3"):
        log.remember(
            ServedResponse(
                request_id=f"r-{response_id}",
                model="bot",
                version_ref="bot@1",
                status=200,
                latency_ms=1.0,
                response_id=response_id,
            )
        )
    feedback = FeedbackService(db, log)
    feedback.submit(response_id="resp-1", thumbs="down", correction="退款请在订单页操作。", feedback_id="f1")
    feedback.submit(response_id="resp-2", thumbs="down", correction="发票可以开。", feedback_id="f2")
    feedback.submit(response_id="resp-3", thumbs="up", correction="很好", feedback_id="f3")  # not low

    [third] = schedules.run_due(
        now=now + timedelta(days=14), evaluate=evaluate, prompts={"resp-1": "怎么退款？"}
    )
    assert third.flagged and third.drop == pytest.approx(0.09 / 0.79)
    assert third.backflow_rows == 1 and third.missing_prompt == 1
    saved = schedules.get(made.id)
    assert (
        saved.flagged
        and "drop" in (saved.flag_reason or "")
        and "without a known prompt" in saved.flag_reason
    )
    assert saved.backflow_dataset == "bot-backflow@1"
    rows = DatasetService(db, settings).rows("bot-backflow@1")
    assert rows[0]["messages"] == [
        {"role": "user", "content": "怎么退款？"},
        {"role": "assistant", "content": "退款请在订单页操作。"},
    ]
    actions = [e.action for e in AuditService(db).list_entries()]
    assert "eval.schedule.flag" in actions


def test_backflow_without_any_prompt_builds_no_dataset(db: Database, tmp_path: Path) -> None:
    schedules = ScheduleService(db, Settings())
    now = utcnow() - timedelta(days=8)
    schedules.add(model="bot:prod", suite_path=str(_suite(tmp_path)), max_drop=0.03, first_due=now)
    evaluate = _scripted(db, [0.9, 0.5])
    log = ResponseLog(db)
    log.remember(
        ServedResponse(
            request_id="r", model="bot", version_ref="bot@1", status=200, latency_ms=1.0, response_id="resp-9"
        )
    )
    FeedbackService(db, log).submit(response_id="resp-9", score=0.1, correction="正确答案", feedback_id="f9")
    schedules.run_due(now=now, evaluate=evaluate)
    [flagged] = schedules.run_due(now=now + timedelta(days=8), evaluate=evaluate)
    assert flagged.flagged and flagged.backflow_rows == 0 and flagged.missing_prompt == 1
    assert flagged.schedule.backflow_dataset is None
