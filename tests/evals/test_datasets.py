from pathlib import Path

import pytest

from stratum.data import DatasetService
from stratum.data.formats import SourceRow
from stratum.errors import InvalidRequest
from stratum.evals.datasets import dataset_suite, suite_from_rows
from stratum.evals.runner import ItemResult, RunResult
from stratum.evals.service import EvalService
from stratum.registry.lineage import LineageService
from stratum.settings import Settings
from stratum.storage import Database

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "你是客服。"},
            {"role": "user", "content": "怎么退款？"},
            {"role": "assistant", "content": "在订单页点击退款。"},
        ],
        "split": "test",
    },
    {
        "messages": [{"role": "user", "content": "发票"}, {"role": "assistant", "content": "可以开。"}],
        "split": "train",
    },
]


def test_chat_rows_last_assistant_is_the_reference_and_split_filters() -> None:
    suite = suite_from_rows(CHAT, fmt="chat", name="客服@3", split="test")
    assert suite.name == "客服@3:test" and suite.kind == "generation"
    [item] = suite.items
    assert item.id == "row-0" and item.references == ("在订单页点击退款。",)
    assert [m["role"] for m in item.messages] == ["system", "user"]
    everything = suite_from_rows(CHAT, fmt="chat", name="客服@3")
    assert [i.id for i in everything.items] == ["row-0", "row-1"]
    # Same rows → same digest (gates reuse runs); a changed reference → another digest.
    assert suite_from_rows(CHAT, fmt="chat", name="客服@3", split="test").digest == suite.digest
    changed = [{**CHAT[0], "messages": [*CHAT[0]["messages"][:2], {"role": "assistant", "content": "不行"}]}]
    assert suite_from_rows(changed, fmt="chat", name="客服@3", split="test").digest != suite.digest


def test_instruction_rows_join_instruction_and_input() -> None:
    rows = [
        {"instruction": "翻译成英文", "input": "你好", "output": "Hello"},
        {"instruction": "问候", "input": "", "output": "你好"},
        {"instruction": "无答案", "input": "", "output": ""},
    ]
    suite = suite_from_rows(rows, fmt="instruction", name="mt@1")
    assert [i.messages[0]["content"] for i in suite.items] == ["翻译成英文\n\n你好", "问候"]
    assert [i.references for i in suite.items] == [("Hello",), ("你好",)]


def test_no_usable_rows_is_an_error() -> None:
    with pytest.raises(InvalidRequest, match="no rows usable"):
        suite_from_rows(CHAT, fmt="chat", name="客服@3", split="validation")


def test_dataset_suite_from_the_store_and_lineage(db: Database, tmp_path: Path) -> None:
    datasets = DatasetService(db, Settings())
    plain = [{k: v for k, v in row.items() if k != "split"} for row in CHAT]
    version = datasets.import_records([SourceRow(f"row {i}", r) for i, r in enumerate(plain)], name="客服")
    with pytest.raises(InvalidRequest, match="no splits"):
        dataset_suite(datasets, version.ref, split="test")
    suite, ref = dataset_suite(datasets, "客服", split=None)
    assert ref == "客服@1" and len(suite.items) == 2
    run = EvalService(db).record_run(
        model_ref="bot@1",
        suite=suite,
        result=RunResult(items=[ItemResult(i.id, "好", {"f1": 0.0}) for i in suite.items]),
        dataset_ref=ref,
    )
    edges = LineageService(db).upstream(("eval", str(run.id)))
    assert {(e.source, e.relation) for e in edges} == {
        (("model", "bot@1"), "evaluated"),
        (("dataset", "客服@1"), "evaluated_on"),
    }
