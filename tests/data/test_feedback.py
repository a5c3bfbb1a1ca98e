"""Feedback → dataset: corrections become rows, bare thumbs-down go to review, missing prompts are
counted (or supplied), lineage links each row's feedback, retention erases kept prompts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stratum.data import DatasetService
from stratum.data import feedback as feedback_data
from stratum.data.review import ReviewService
from stratum.errors import InvalidRequest
from stratum.registry.feedback import FeedbackService
from stratum.registry.lineage import LineageService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.storage import Database, utcnow

PROMPT = [
    {"role": "system", "content": "你是客服。"},
    {"role": "user", "content": "我的手机号是[PHONE]，怎么退款？"},
]


def _served(log: ResponseLog, response_id: str, *, prompt: object = None, answer: str | None = None) -> None:
    log.remember(
        ServedResponse(
            request_id=f"req-{response_id}",
            model="bot",
            version_ref="bot@1",
            status=200,
            latency_ms=3.0,
            response_id=response_id,
            prompt=prompt,  # type: ignore[arg-type]
            answer=answer,
        )
    )


@pytest.fixture
def feedback(db: Database) -> FeedbackService:
    log = ResponseLog(db)
    _served(log, "r-corrected", prompt=PROMPT, answer="不知道。")
    _served(log, "r-bare", prompt=[{"role": "user", "content": "发票怎么开？"}], answer="随便开。")
    _served(log, "r-old")  # served before prompts were kept
    _served(log, "r-good", prompt=[{"role": "user", "content": "你好"}], answer="您好！")
    log.flush()
    service = FeedbackService(db, log)
    service.submit(
        response_id="r-corrected", thumbs="down", correction="请在订单页申请退款。", feedback_id="fb-1"
    )
    service.submit(response_id="r-bare", thumbs="down", feedback_id="fb-2")
    service.submit(response_id="r-old", score=0.2, correction="旧问题的正确答案。", feedback_id="fb-3")
    service.submit(response_id="r-good", thumbs="up", feedback_id="fb-4")
    return service


def test_corrections_become_rows_and_bare_thumbs_down_go_to_review(
    db: Database, datasets: DatasetService, feedback: FeedbackService
) -> None:
    made = feedback_data.build(
        datasets, feedback, name="客服反馈", model="bot", since=utcnow() - timedelta(days=1)
    )
    assert (made.feedback, made.corrections, made.review, made.missing_prompt, made.missing_answer) == (
        3,
        1,
        1,
        1,
        0,
    )
    assert made.version is not None and made.version.ref == "客服反馈@1"
    rows = datasets.rows("客服反馈@1")
    assert rows[0]["messages"] == [*PROMPT, {"role": "assistant", "content": "请在订单页申请退款。"}]
    assert rows[0]["label"] == "correction"
    assert rows[1]["messages"][-1] == {"role": "assistant", "content": "随便开。"}
    queue = ReviewService(datasets).queue("客服反馈@1")
    assert [(item.row_index, item.label) for item in queue] == [(1, "needs_correction")]
    assert made.version.report["dropped"] == {"missing_prompt": 1}
    # Lineage: each row's feedback → the dataset version.
    edges = LineageService(db).upstream(("dataset", "客服反馈@1"))
    assert {(tuple(e.source), e.relation) for e in edges} >= {
        (("feedback", "fb-1"), "backflow"),
        (("feedback", "fb-2"), "backflow"),
    }


def test_prompts_file_covers_feedback_from_before_prompts_were_kept(
    datasets: DatasetService, feedback: FeedbackService
) -> None:
    made = feedback_data.build(
        datasets, feedback, name="backflow", model="bot@1", prompts={"r-old": "旧问题？"}, max_score=0.3
    )
    assert made.corrections == 2 and made.missing_prompt == 0
    assert made.version is not None
    assert datasets.rows(made.version.ref)[-1]["messages"][0] == {"role": "user", "content": "旧问题？"}


def test_nothing_usable_builds_no_version(datasets: DatasetService, feedback: FeedbackService) -> None:
    made = feedback_data.build(datasets, feedback, name="空", model="other")
    assert made.version is None and made.feedback == 0
    with pytest.raises(InvalidRequest):
        feedback_data.build(datasets, feedback, name="bad name!")


def test_retention_erases_kept_prompts_but_keeps_the_feedback(
    datasets: DatasetService, feedback: FeedbackService
) -> None:
    assert feedback.erase_prompts(before=utcnow() - timedelta(days=1)) == 0
    assert feedback.erase_prompts(before=utcnow() + timedelta(seconds=1)) == 3  # r-old had none
    examples = feedback.examples(model_ref="bot")
    assert len(examples) == 4 and all(e.prompt is None and e.answer is None for e in examples)
    assert feedback_data.build(datasets, feedback, name="x").missing_prompt == 3
