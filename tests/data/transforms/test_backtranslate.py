from __future__ import annotations

import pytest

from stratum.data import DatasetService
from stratum.data.transforms import TransformService
from stratum.engine.fake import FakeEngine
from stratum.errors import InvalidRequest
from tests.data.conftest import WriteJsonl


def test_round_trip_through_the_engine_adds_synthetic_rows(
    datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    rows = [
        {"prompt": "怎么申请退款？", "chosen": "在订单页申请。", "rejected": "不知道。"},
        {"prompt": "你好", "chosen": "您好！", "rejected": "嗯"},
    ]
    datasets.import_file(write_jsonl("prefs.jsonl", rows), name="prefs")
    # Replies in order: row 1 → en, → zh (a paraphrase); row 2 → en, → zh (unchanged, not added).
    engine = FakeEngine(["How do I apply for a refund?", "如何申请退款？", "Hello", "你好"])
    service = TransformService(datasets, engine_for=lambda model: engine)
    (version,) = service.run("prefs", ["backtranslate"], {"backtranslate": {"model": "fake"}})
    out = datasets.load_rows(version)
    assert [r["prompt"] for r in out] == ["怎么申请退款？", "如何申请退款？", "你好"]
    assert [r["synthetic"] for r in out] == [False, True, False]
    assert out[1]["chosen"] == "在订单页申请。"  # answers are kept
    assert version.report["added"] == 1 and version.report["dropped"] == {"variant_unchanged": 1}
    first = engine.requests[0]
    assert first.params.temperature == 0.0 and "English" in first.messages[0]["content"]
    assert "怎么申请退款？" in first.messages[0]["content"]
    assert "Chinese" in engine.requests[1].messages[0]["content"]


def test_needs_an_engine_and_a_model(datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    datasets.import_file(
        write_jsonl("p.jsonl", [{"prompt": "问", "chosen": "好", "rejected": "坏"}]), name="p"
    )
    with pytest.raises(InvalidRequest, match="needs a model engine"):
        TransformService(datasets).run("p", ["backtranslate"], {"backtranslate": {"model": "x"}})
    with pytest.raises(InvalidRequest, match="needs model=NAME"):
        TransformService(datasets, engine_for=lambda m: FakeEngine()).run("p", ["backtranslate"])
