"""DatasetService: import and validation, immutable content-addressed versions, refs, diff, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stratum.data import DatasetService, InvalidRows, StepReport, Transform
from stratum.errors import InvalidRequest, NotFound
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.storage import Database
from tests.data.conftest import CHINESE_SFT, WriteJsonl


def test_import_detects_instruction_and_round_trips_chinese(
    datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    version = datasets.import_file(write_jsonl("中文指令.jsonl", CHINESE_SFT))
    assert version.dataset == "中文指令" and version.ref == "中文指令@1" and version.number == 1
    assert version.format == "instruction" and version.row_count == 3 and version.parent is None
    assert version.transform == Transform(
        name="import", params={"source": "中文指令.jsonl", "format": "auto"}
    )
    assert datasets.load_rows(version) == CHINESE_SFT
    table = datasets.load_table("中文指令@1")
    assert table.column_names == ["instruction", "input", "output"] and table.num_rows == 3
    assert (datasets.objects.path(version.content_hash)).is_file()


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        (
            {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]},
            "chat",
        ),
        ({"conversations": [{"from": "human", "value": "在吗"}, {"from": "gpt", "value": "在的"}]}, "chat"),
        ({"prompt": "推荐一本书", "chosen": "《红楼梦》", "rejected": "不知道"}, "preference"),
        ({"instruction": "问候", "output": "你好"}, "instruction"),
    ],
)
def test_formats_are_detected(datasets: DatasetService, write_jsonl: WriteJsonl, row: dict, fmt: str) -> None:
    version = datasets.import_file(write_jsonl("one.jsonl", [row]))
    assert version.format == fmt
    stored = datasets.load_rows(version)[0]
    if fmt == "chat":
        assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


def test_bad_rows_name_line_and_field(datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    rows = [
        CHINESE_SFT[0],
        {"instruction": "总结", "input": "文本"},  # line 2: no output
        "{not json",  # line 3
        {"instruction": "翻译", "output": 42},  # line 4: wrong type
    ]
    path = write_jsonl("bad.jsonl", rows)
    with pytest.raises(InvalidRows) as caught:
        datasets.import_file(path)
    message = caught.value.message
    assert "bad.jsonl: 3 of 4 rows are invalid" in message
    assert "line 2, field 'output': missing" in message
    assert "line 3, field '(json)': not valid JSON" in message
    assert "line 4, field 'output': must be a string, got int" in message
    with pytest.raises(NotFound):
        datasets.get("bad")  # nothing was written
    kept = datasets.import_file(path, skip_invalid=True)
    assert kept.row_count == 1 and kept.report["dropped"] == {"invalid": 3}
    assert "line 2, field 'output': missing" in kept.report["details"]["errors"]
    assert kept.report["examples"][0] == {
        "index": 2,
        "reason": "invalid",
        "text": "line 2, field 'output': missing",
    }


def test_chat_validation_names_the_message(datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    bad = {"messages": [{"role": "user", "content": "你好"}, {"role": "robot", "content": "嗨"}]}
    with pytest.raises(InvalidRows, match=r"line 1, field 'messages\[1\].role': must be one of"):
        datasets.import_file(write_jsonl("chat.jsonl", [bad]))


def test_unknown_format_and_file_type(
    datasets: DatasetService, write_jsonl: WriteJsonl, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="cannot tell the format"):
        datasets.import_file(write_jsonl("x.jsonl", [{"question": "为什么", "answer": "因为"}]))
    other = tmp_path / "x.txt"
    other.write_text("hi", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="unknown file type"):
        datasets.import_file(other)


def test_csv_and_parquet_imports(datasets: DatasetService, tmp_path: Path) -> None:
    path = tmp_path / "prefs.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "chosen", "rejected", "id"])
        writer.writeheader()
        writer.writerow(
            {"prompt": "介绍长城", "chosen": "长城是古代的防御工程。", "rejected": "不清楚", "id": "1"}
        )
        writer.writerow({"prompt": "多行\n问题", "chosen": "好", "rejected": "", "id": "2"})
    with pytest.raises(InvalidRows, match="line 4, field 'rejected': empty"):
        datasets.import_file(path)
    table = pa.table({"instruction": ["说你好"], "input": [None], "output": ["你好"]})
    pq.write_table(table, tmp_path / "sft.parquet")
    version = datasets.import_file(tmp_path / "sft.parquet", name="sft")
    assert datasets.load_rows(version) == [{"instruction": "说你好", "input": "", "output": "你好"}]


def test_versions_are_content_addressed_and_chained(
    datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    first = datasets.import_file(write_jsonl("a.jsonl", CHINESE_SFT), name="sft")
    # Same content, different key order and spacing: same hash, one file, a new version number.
    reordered = [dict(reversed(list(row.items()))) for row in CHINESE_SFT]
    second = datasets.import_file(write_jsonl("b.jsonl", reordered), name="sft")
    assert second.number == 2 and second.parent == "sft@1"
    assert second.content_hash == first.content_hash
    third = datasets.import_file(write_jsonl("c.jsonl", CHINESE_SFT[:2]), name="sft")
    assert third.content_hash != first.content_hash
    assert datasets.get("sft").number == 3 and datasets.get("sft@latest").number == 3
    assert datasets.get(f"sft@{first.content_hash[:10]}").number == 2  # newest with that content
    shown = datasets.show("sft")
    assert [v.number for v in shown.versions] == [1, 2, 3] and shown.latest == 3
    with pytest.raises(NotFound):
        datasets.get("sft@9")
    with pytest.raises(InvalidRequest):
        datasets.get("sft@v1!")


def test_format_of_a_dataset_is_fixed(datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    datasets.import_file(write_jsonl("a.jsonl", CHINESE_SFT), name="sft")
    prefs = [{"prompt": "问", "chosen": "好答案", "rejected": "坏答案"}]
    with pytest.raises(InvalidRequest, match="holds instruction rows"):
        datasets.import_file(write_jsonl("p.jsonl", prefs), name="sft")
    assert datasets.get("sft").number == 1


def test_failed_transaction_leaves_no_orphan_file(datasets: DatasetService) -> None:
    rows = [{"instruction": "独一无二的问题", "input": "", "output": "答"}]
    with pytest.raises(NotFound):  # the project does not exist: the DB transaction fails
        datasets.commit_version(
            name="x",
            project="no/such",
            fmt="instruction",
            rows=rows,
            parent=None,
            transform=Transform(name="import"),
            report=StepReport(step="import", rows_in=1, rows_out=1),
        )
    objects = datasets.objects.root / "objects"
    assert not any(p.suffix == ".parquet" for p in objects.rglob("*")) if objects.exists() else True


def test_project_datasets_are_separate(
    db: Database, datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"))
    tenancy.create_project("acme", ProjectCreate(name="bot"))
    tenancy.create_project("acme", ProjectCreate(name="ops"))
    version = datasets.import_file(write_jsonl("a.jsonl", CHINESE_SFT), name="sft", project="acme/bot")
    assert version.ref == "acme/bot/sft@1" and version.project == "acme/bot"
    assert datasets.get("sft", project="acme/bot") == version == datasets.get("acme/bot/sft@1")
    with pytest.raises(NotFound):
        datasets.get("sft")
    with pytest.raises(NotFound):
        datasets.get("sft", project="acme/ops")
    assert [d.name for d in datasets.list_datasets(project="acme/bot")] == ["sft"]
    assert datasets.list_datasets(project="acme/ops") == []
    assert [d.project for d in datasets.list_datasets(everything=True)] == ["acme/bot"]


def test_diff_and_export(datasets: DatasetService, write_jsonl: WriteJsonl, tmp_path: Path) -> None:
    datasets.import_file(write_jsonl("a.jsonl", CHINESE_SFT), name="sft")
    changed = [*CHINESE_SFT[:2], {"instruction": "新问题", "input": "", "output": "新答案"}]
    datasets.import_file(write_jsonl("b.jsonl", changed), name="sft")
    diff = datasets.diff("sft@1", "sft@2")
    assert (diff.common, diff.removed, diff.added) == (2, 1, 1)
    assert diff.removed_examples == [CHINESE_SFT[2]] and diff.added_examples[0]["output"] == "新答案"
    for suffix in ("jsonl", "csv", "parquet"):
        target = tmp_path / "out" / f"sft.{suffix}"
        assert datasets.export("sft@1", target) == 3
        again = datasets.import_file(target, name=f"back-{suffix}")
        assert datasets.load_rows(again) == CHINESE_SFT
    lines = (tmp_path / "out" / "sft.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1])["input"] == "北京是中国的首都，有三千多年的历史。"
    assert "北京" in lines[1]  # not \\u-escaped


def test_every_version_is_audited(db: Database, datasets: DatasetService, write_jsonl: WriteJsonl) -> None:
    from stratum.governance.audit import AuditService

    tenancy = TenancyService(db)
    org = tenancy.create_org(OrgCreate(name="acme"))
    tenancy.create_project("acme", ProjectCreate(name="bot"))
    datasets.import_file(
        write_jsonl("a.jsonl", CHINESE_SFT), name="sft", project="acme/bot", actor="cli:张三"
    )
    audit = AuditService(db)
    entries = [e for e in audit.list_entries(org_id=org.id) if e.action == "dataset.version"]
    assert [(e.actor, e.target) for e in entries] == [("cli:张三", "acme/bot/sft@1")]
    assert entries[0].detail["rows"] == 3 and audit.verify().ok
