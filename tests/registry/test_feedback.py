"""Feedback: attribution through the response log, tenant checks, validation, queries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stratum.errors import InvalidRequest, NotFound
from stratum.registry.feedback import FeedbackService
from stratum.registry.lineage import LineageService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.storage import Database, utcnow


def _served(
    log: ResponseLog,
    response_id: str,
    *,
    version: str = "bot@2",
    project: str | None = "p1",
    model: str = "bot",
) -> None:
    log.remember(
        ServedResponse(
            request_id=f"req-{response_id}",
            model=model,
            version_ref=version,
            status=200,
            latency_ms=12.5,
            response_id=response_id,
            deployment="bot",
            key_id="k1",
            org_id="o1",
            project_id=project,
        )
    )


def test_feedback_is_attributed_before_and_after_the_flush(db: Database) -> None:
    log = ResponseLog(db)
    service = FeedbackService(db, log)
    _served(log, "chatcmpl-1")
    first = service.submit(
        response_id="chatcmpl-1",
        thumbs="down",
        correction="应该回答：退货期为七天。",
        key_id="k2",
        org_id="o1",
        project_id="p1",
        feedback_id="fb-1",
    )
    assert (first.version_ref, first.score, first.deployment, first.request_id) == (
        "bot@2",
        0.0,
        "bot",
        "req-chatcmpl-1",
    )
    assert log.flush() == 1 and log.pending() == 0
    # A fresh log (another gateway) finds the response in the store.
    other = FeedbackService(db, ResponseLog(db))
    second = other.submit(
        response_id="chatcmpl-1", score=0.9, key_id="k1", org_id="o1", project_id="p1", feedback_id="fb-2"
    )
    assert second.version_ref == "bot@2"
    lineage = LineageService(db)
    assert {e.target for e in lineage.downstream(("model", "bot@2"))} == {
        ("feedback", "fb-1"),
        ("feedback", "fb-2"),
    }
    assert {e.target for e in lineage.downstream(("deployment", "bot"))} == {
        ("feedback", "fb-1"),
        ("feedback", "fb-2"),
    }


def test_other_tenants_and_unknown_ids_get_the_same_404(db: Database) -> None:
    log = ResponseLog(db)
    service = FeedbackService(db, log)
    _served(log, "chatcmpl-1")
    for kwargs in (
        {"response_id": "chatcmpl-1", "project_id": "p2", "org_id": "o1"},
        {"response_id": "nope", "project_id": "p1", "org_id": "o1"},
    ):
        with pytest.raises(NotFound) as caught:
            service.submit(score=1.0, key_id="k9", feedback_id="fb-x", **kwargs)
        assert "served to this project" in caught.value.message
    # An admin may rate any response.
    assert service.submit(response_id="chatcmpl-1", score=1.0, is_admin=True, feedback_id="fb-a").score == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"score": 1.5},
        {"score": -0.1},
        {"thumbs": "sideways"},
        {"score": 0.1, "thumbs": "up"},
        {"score": 1.0, "comment": "x" * 10_001},
    ],
)
def test_bad_feedback_is_refused(db: Database, kwargs: dict[str, object]) -> None:
    log = ResponseLog(db)
    _served(log, "r1")
    with pytest.raises(InvalidRequest):
        FeedbackService(db, log).submit(response_id="r1", project_id="p1", feedback_id="fb-1", **kwargs)  # type: ignore[arg-type]


def test_list_and_summarise(db: Database) -> None:
    log = ResponseLog(db)
    service = FeedbackService(db, log)
    start = utcnow()
    for i, (version, score) in enumerate([("bot@1", 1.0), ("bot@1", 0.8), ("bot@2", 0.2), ("bot@2", 0.4)]):
        _served(log, f"r{i}", version=version)
        service.submit(
            response_id=f"r{i}",
            score=score,
            project_id="p1",
            feedback_id=f"fb-{i}",
            correction="更好的回答" if score < 0.5 else None,
        )
    low = service.list_feedback(max_score=0.5, with_correction=True)
    assert [f.id for f in low] == ["fb-2", "fb-3"] and low[0].correction == "更好的回答"
    assert [f.id for f in service.list_feedback(model_ref="bot@1")] == ["fb-0", "fb-1"]
    assert len(service.list_feedback(model_ref="bot")) == 4
    assert service.list_feedback(since=start + timedelta(hours=1)) == []
    summary = service.score_summary(["bot@1", "bot@2", "bot@3"])
    assert summary["bot@1"].count == 2 and summary["bot@1"].mean == pytest.approx(0.9)
    assert summary["bot@2"].positives == 0 and summary["bot@1"].positives == 2
    assert summary["bot@3"].count == 0 and summary["bot@3"].mean is None


def test_the_log_keeps_rows_when_the_store_fails(db: Database) -> None:
    log = ResponseLog(db)
    _served(log, "r1")
    db.dispose()
    real = db.session

    def broken(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        raise OSError("store down")

    db.session = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        log.flush()
    assert log.pending() == 1
    db.session = real  # type: ignore[method-assign]
    assert log.flush() == 1


def test_prune_forgets_old_responses(db: Database) -> None:
    log = ResponseLog(db)
    _served(log, "old")
    log.flush()
    assert log.prune(utcnow() - timedelta(days=1)) == 0
    assert log.prune(utcnow() + timedelta(seconds=1)) == 1
    assert ResponseLog(db).lookup("old") is None


def test_a_refused_row_does_not_block_the_log(db: Database) -> None:
    log = ResponseLog(db)
    _served(log, "dup")
    log.flush()
    _served(log, "dup")  # the same response id again: the store's unique index refuses it
    _served(log, "fine")
    assert log.flush() == 1 and log.dropped == 1 and log.pending() == 0
    assert ResponseLog(db).lookup("fine") is not None


def test_feedback_of_a_model_includes_requests_by_alias_or_version(db: Database) -> None:
    """``model_ref=NAME`` means every version of NAME, whatever name the client sent (the eval
    schedule's backflow asks for the feedback on ``bot`` after users called ``bot:prod``)."""
    log = ResponseLog(db)
    service = FeedbackService(db, log)
    sent = [
        ("bot:prod", "bot@2"),
        ("bot@1", "bot@1"),
        ("客服路由", "bot@2"),
        ("bot_v2", "bot_v2@1"),
        ("botx", "botx@1"),
    ]
    for i, (model, version) in enumerate(sent):
        _served(log, f"r{i}", version=version, model=model)
        service.submit(
            response_id=f"r{i}", thumbs="down", project_id="p1", feedback_id=f"fb-{i}", correction="应答"
        )
    assert [f.id for f in service.list_feedback(model_ref="bot")] == ["fb-0", "fb-1", "fb-2"]
    assert [f.model for f in service.list_feedback(model_ref="bot@2")] == ["bot:prod", "客服路由"]
    assert [f.id for f in service.list_feedback(model_ref="bot_v2")] == ["fb-3"]  # '_' is no wildcard
