"""`stratum data …` in-process: import errors, transform params, show/list/diff/export, label + review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from typer.testing import CliRunner

from stratum.cli.data import parse_params
from stratum.cli.main import app
from stratum.cli.output import CliError

ROWS = [
    {
        "messages": [
            {"role": "user", "content": "我想退款，怎么操作？"},
            {"role": "assistant", "content": "请在订单页点击申请退款。"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "我想退款，怎么操作？"},
            {"role": "assistant", "content": "请在订单页点击申请退款。"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "发票怎么开？"},
            {"role": "assistant", "content": "请联系客服开具发票。"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "你们周末上班吗"},
            {"role": "assistant", "content": "周末也有客服在线。"},
        ]
    },
]


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_params_parsing() -> None:
    assert parse_params(["dedup.threshold=0.9", "length.field=output", 'sensitive.words=["密码"]']) == {
        "dedup": {"threshold": 0.9},
        "length": {"field": "output"},
        "sensitive": {"words": ["密码"]},
    }
    assert parse_params(['{"split": {"seed": 7}}', "split.test=0.2"]) == {"split": {"seed": 7, "test": 0.2}}
    with pytest.raises(CliError):
        parse_params(["threshold=0.9"])


def test_import_transform_show_list(runner: CliRunner, tmp_path: Path) -> None:
    source = _write(tmp_path / "客服.jsonl", ROWS)
    imported = _json(runner, "data", "import", str(source))
    assert imported["ref"] == "客服@1" and imported["format"] == "chat"
    made = _json(runner, "data", "transform", "客服", "--steps", "dedup,split", "--params", "split.seed=3")
    assert [v["ref"] for v in made] == ["客服@2", "客服@3"]
    assert made[1]["transform"]["params"]["seed"] == 3 and sum(made[1]["splits"].values()) == 3
    shown = _json(runner, "data", "show", "客服")
    assert [v["transform"]["name"] for v in shown["versions"]] == ["import", "dedup", "split"]
    assert _json(runner, "data", "show", "客服@2")["report"]["dropped"] == {"exact_duplicate": 1}
    assert [d["name"] for d in _json(runner, "data", "list")] == ["客服"]
    table = runner.invoke(app, ["data", "show", "客服"])
    assert table.exit_code == 0 and "dedup" in table.stdout
    bad = runner.invoke(app, ["data", "transform", "客服", "--steps", "dedup", "--params", "dedup.nope=1"])
    assert bad.exit_code == 1 and "step 'dedup' has no parameter 'nope'" in bad.stderr
    missing = runner.invoke(app, ["data", "show", "无此数据@1"])
    assert missing.exit_code == 1 and "No dataset named '无此数据'" in missing.stderr


def test_label_and_scripted_review(runner: CliRunner, tmp_path: Path) -> None:
    _json(runner, "data", "import", str(_write(tmp_path / "faq.jsonl", ROWS[1:])))
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"退款": ["退款", "re:退.{0,2}款"], "发票": ["发票"]}, ensure_ascii=False),
        encoding="utf-8",
    )
    labelled = _json(runner, "data", "label", "faq", "--rules", str(rules), "--threshold", "0.6")
    assert labelled["version"]["ref"] == "faq@2" and labelled["queued"] == 2  # 发票 (0.5) and 周末 (0)
    decisions = tmp_path / "decisions.jsonl"
    bad_line = '{"row_index": 1, "decision": "maybe"}'
    decisions.write_text(bad_line + "\n", encoding="utf-8")
    bad = runner.invoke(app, ["data", "review", "faq@2", "--decisions", str(decisions)])
    assert bad.exit_code == 1 and "line 1, field 'decision'" in bad.stderr
    edited = {
        "messages": [{"role": "user", "content": "开发票"}, {"role": "assistant", "content": "找客服。"}]
    }
    lines = [
        {"row_index": 1, "decision": "edit", "row": edited, "label": "发票"},
    ]
    decisions.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    partial = _json(runner, "data", "review", "faq@2", "--decisions", str(decisions))
    assert partial == {"decided": 1, "pending": 1, "version": None}
    decisions.write_text(json.dumps({"row_index": 2, "decision": "reject"}), encoding="utf-8")
    done = _json(runner, "data", "review", "faq@2", "--decisions", str(decisions))
    assert done["pending"] == 0 and done["version"]["ref"] == "faq@3" and done["version"]["row_count"] == 2
    exported = tmp_path / "out.jsonl"
    _json(runner, "data", "export", "faq@3", str(exported))
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert (
        rows[1]["messages"][0]["content"] == "开发票"
        and rows[1]["label"] == "发票"
        and rows[1]["confidence"] == 1.0
    )
    assert rows[0]["label"] == "退款"


def test_interactive_review(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _json(runner, "data", "import", str(_write(tmp_path / "faq.jsonl", ROWS[2:])))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"发票": ["发票"]}, ensure_ascii=False), encoding="utf-8")
    _json(runner, "data", "label", "faq", "--rules", str(rules))
    edited = {
        "messages": [{"role": "user", "content": "周末有人吗"}, {"role": "assistant", "content": "有的。"}]
    }
    monkeypatch.setattr(click, "edit", lambda text, extension: json.dumps(edited, ensure_ascii=False))
    # Row 0 (发票, 0.5): edit with label 咨询; row 1 (no keyword, 0.0): reject.
    result = runner.invoke(app, ["data", "review", "faq@2"], input="e\n咨询\nr\n")
    assert result.exit_code == 0, result.output
    assert "2 decisions recorded, 0 rows still pending" in result.stdout
    final = _json(runner, "data", "show", "faq@3")
    assert final["row_count"] == 1 and final["report"]["dropped"] == {"rejected": 1}
    assert final["report"]["changed"] == 1
    exported = tmp_path / "final.jsonl"
    _json(runner, "data", "export", "faq@3", str(exported))
    row = json.loads(exported.read_text(encoding="utf-8"))
    assert row["messages"] == edited["messages"] and row["label"] == "咨询"


def test_llm_labeller_and_backtranslate_through_an_openai_server(
    runner: CliRunner, tmp_path: Path, fake_openai: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _json(runner, "data", "import", str(_write(tmp_path / "faq.jsonl", ROWS[2:])))
    labelled = _json(
        runner, "data", "label", "faq", "--model", "plain", "--labels", "测试模型,其他",
        "--base-url", fake_openai.url, "--api-key", fake_openai.api_key, "--threshold", "0.7",
    )  # fmt: skip
    # The fake answers "你好，我是测试模型。": it contains one label, so confidence 0.6 < 0.7.
    assert labelled["queued"] == 2 and labelled["version"]["transform"]["params"]["model"] == "plain"
    asked = fake_openai.requests[0]["messages"][0]["content"]
    assert "测试模型, 其他" in asked and "发票怎么开？" in asked
    monkeypatch.setenv("STRATUM_API_KEY", fake_openai.api_key)
    made = _json(
        runner, "data", "transform", "faq@1", "--steps", "backtranslate",
        "--params", "backtranslate.model=fake", "--base-url", fake_openai.url,
    )  # fmt: skip
    rows = _json(runner, "data", "show", made[0]["ref"])
    assert rows["row_count"] == 4 and rows["report"]["added"] == 2
    streamed = fake_openai.requests[-1]
    assert streamed["stream"] is True and streamed["temperature"] == 0.0
