"""Labellers and the review queue's rules (the CLI and API tests walk the whole flow)."""

from __future__ import annotations

import pytest

from stratum.data import DatasetService
from stratum.data.review import ChatLabeller, KeywordLabeller, ReviewService
from stratum.data.schemas import ReviewDecision
from stratum.errors import Conflict, InvalidRequest
from tests.data.conftest import WriteJsonl


def test_keyword_confidence() -> None:
    labeller = KeywordLabeller(
        rules={"退款": ["退款", "re:退.?钱"], "物流": ["快递", "物流"]}, default="其他"
    )
    assert labeller.label("我要退款，能退钱吗") == ("退款", 0.6667)
    assert labeller.label("退款") == ("退款", 0.5)
    assert labeller.label("退款的快递") == ("退款", 0.3333)  # a tie: low confidence
    assert labeller.label("你好") == ("其他", 0.0)
    assert labeller.label("REFUND") == ("其他", 0.0)
    assert KeywordLabeller(rules={"refund": ["refund"]}).label("Refund please") == ("refund", 0.5)
    with pytest.raises(InvalidRequest, match="bad regex"):
        KeywordLabeller(rules={"x": ["re:("]})
    with pytest.raises(InvalidRequest):
        KeywordLabeller(rules={"x": []})


def test_chat_labeller_parses_answers() -> None:
    answers = iter(["退款", "这是物流问题。", "不知道", "退款或物流"])
    labeller = ChatLabeller(labels=["退款", "物流"], model="m", complete=lambda prompt: next(answers))
    assert [labeller.label("t") for _ in range(4)] == [("退款", 0.9), ("物流", 0.6), (None, 0.0), (None, 0.0)]


def test_decisions_are_validated(datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    rows = [
        {"prompt": "退款", "chosen": "好的", "rejected": "不行"},
        {"prompt": "你好", "chosen": "您好", "rejected": "嗯"},
    ]
    datasets.import_file(write_jsonl("p.jsonl", rows), name="p")
    reviews = ReviewService(datasets)
    with pytest.raises(InvalidRequest, match="has no review queue"):
        reviews.decide("p@1", [ReviewDecision(row_index=0, decision="accept")])
    version, queued = reviews.label("p", KeywordLabeller(rules={"退款": ["退款"]}), threshold=0.6)
    assert queued == 2 and [i.row_index for i in reviews.queue(version.ref)] == [0, 1]
    with pytest.raises(InvalidRequest, match="row 5 of p@2 is not in the review queue"):
        reviews.decide("p@2", [ReviewDecision(row_index=5, decision="accept")])
    bad_edit = ReviewDecision(
        row_index=0, decision="edit", row={"prompt": "退款", "chosen": "同", "rejected": "同"}
    )
    with pytest.raises(InvalidRequest, match="field 'rejected': identical to chosen"):
        reviews.decide("p@2", [ReviewDecision(row_index=1, decision="accept"), bad_edit])
    assert len(reviews.queue("p@2")) == 2  # all or nothing
    with pytest.raises(Conflict, match="still has 2 rows to review"):
        reviews.commit("p@2")
    reviews.decide(
        "p@2",
        [
            ReviewDecision(row_index=0, decision="edit", label="售后"),
            ReviewDecision(row_index=1, decision="reject"),
        ],
    )
    final = reviews.commit("p@2")
    assert final.parent == "p@2" and final.transform.params == {
        "reviewed": "p@2",
        "accepted": 0,
        "edited": 1,
        "rejected": 1,
    }
    assert datasets.load_rows(final) == [{**rows[0], "label": "售后", "confidence": 1.0}]
