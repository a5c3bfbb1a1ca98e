"""`stratum kb …` in-process against a temp store, with the bundled e5 on a few short files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from stratum.cli.main import app
from tests.knowledge.conftest import CORPUS


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_ingest_search_export_import(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "资料"
    folder.mkdir()
    for name in ("tea.md", "green_tea.md"):
        shutil.copy(CORPUS / name, folder / name)
    _json(runner, "orgs", "create", "acme")
    _json(runner, "projects", "create", "acme/bot")
    created = _json(
        runner, "kb", "create", "茶", "--project", "acme/bot", "--chunk-size", "64", "--chunk-overlap", "8"
    )
    assert created["settings"]["chunk_size"] == 64 and created["project"] == "acme/bot"
    progress = _json(runner, "kb", "ingest", "茶", str(folder), "--tags", "茶叶")
    assert progress["state"] == "done" and progress["files_total"] == 2 and progress["chunks_done"] >= 4
    shown = runner.invoke(app, ["kb", "ingest", "茶", str(folder)])
    assert shown.exit_code == 0 and "skipped" in shown.stdout
    found = _json(runner, "kb", "search", "acme/bot/茶", "碧螺春用多少度的水冲泡？", "-k", "2")
    assert found["hits"][0]["source"] == "green_tea.md" and "七十五度" in found["hits"][0]["text"]
    text = runner.invoke(app, ["kb", "search", "茶", "龙井 清明", "--mode", "bm25", "--source", "tea.md"])
    assert text.exit_code == 0 and text.stdout.startswith("[1] tea.md")
    archive = tmp_path / "茶.zip"
    assert _json(runner, "kb", "export", "茶", str(archive))["chunks"] == progress["chunks_done"]
    imported = _json(runner, "kb", "import", str(archive), "--project", "acme/bot", "--name", "茶2")
    assert imported["chunks"] == progress["chunks_done"]
    listed = _json(runner, "kb", "list")
    assert [kb["name"] for kb in listed] == ["茶", "茶2"]
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(
            {"question": "碧螺春产自哪里？", "expected_source": "green_tea.md", "answers": ["洞庭山"]}
        ),
        encoding="utf-8",
    )
    report = json.loads(
        runner.invoke(
            app,
            ["kb", "eval", "茶", str(questions), "--compare", "hybrid,bm25", "--against", "茶2", "--json"],
        ).stdout
    )
    assert len(report) == 4 and all(r["hit@5"] == 1.0 and r["answer_recall"] == 1.0 for r in report)
    assert runner.invoke(app, ["kb", "delete", "茶2"]).exit_code == 0
    changed = _json(runner, "kb", "set", "茶", "--generator", "qwen", "--read-roles", "developer,viewer")
    assert changed["settings"]["generator_model"] == "qwen" and changed["settings"]["read_roles"] == [
        "developer",
        "viewer",
    ]
    fused = _json(runner, "kb", "set", "茶", "--fusion", "rrf", "--dense-weight", "0.6")
    assert fused["settings"]["fusion"] == "rrf" and fused["settings"]["dense_weight"] == 0.6
    bad = runner.invoke(app, ["kb", "set", "茶", "--fusion", "borda"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: invalid settings")
    bad = runner.invoke(app, ["kb", "set", "茶", "--retrieval", "magic"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: invalid settings")

    documents = _json(runner, "kb", "documents", "茶")
    assert [d["source"] for d in documents] == ["green_tea.md", "tea.md"]
    assert all(d["status"] == "done" and d["tags"] == ["茶叶"] for d in documents)
    table = runner.invoke(app, ["kb", "documents", "茶"])
    assert table.exit_code == 0 and "green_tea.md" in table.stdout and "茶叶" in table.stdout
    unknown = runner.invoke(app, ["kb", "remove", "茶", "tea.md", "乌龙.md"])
    assert (
        unknown.exit_code == 1
        and unknown.stderr.strip() == "error: knowledge base 茶 has no document '乌龙.md'"
    )
    removed = runner.invoke(app, ["kb", "remove", "茶", "tea.md"])
    tea_chunks = next(d["chunks_done"] for d in documents if d["source"] == "tea.md")
    assert (
        removed.exit_code == 0
        and removed.stdout.strip() == f"removed tea.md ({tea_chunks} chunk{'' if tea_chunks == 1 else 's'})"
    )
    left = _json(runner, "kb", "search", "茶", "龙井 清明", "--mode", "bm25")
    assert {h["source"] for h in left["hits"]} <= {"green_tea.md"}
    assert [kb["chunks"] for kb in _json(runner, "kb", "list")] == [progress["chunks_done"] - tea_chunks]


def test_bad_input_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["kb", "search", "nope", "x"])
    assert result.exit_code == 1 and result.stderr.strip() == "error: no knowledge base 'nope'"
    result = runner.invoke(app, ["kb", "create", "x", "--project", "no/such"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "\n" not in result.stderr.strip()
    result = runner.invoke(
        app, ["kb", "create", "x", "--project", "a/b", "--chunk-size", "64", "--chunk-overlap", "64"]
    )
    assert result.exit_code == 1 and "chunk_overlap" in result.stderr
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n', encoding="utf-8")
    result = runner.invoke(app, ["kb", "eval", "nope", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 1 and "expected_source" in result.stderr


def test_ingest_urls_and_in_the_background(runner: CliRunner, tmp_path: Path) -> None:
    from tests.knowledge.pages import serving

    _json(runner, "orgs", "create", "acme")
    _json(runner, "projects", "create", "acme/bot")
    _json(
        runner, "kb", "create", "网页", "--project", "acme/bot", "--chunk-size", "64", "--chunk-overlap", "8"
    )
    with serving() as site:
        partly = runner.invoke(
            app,
            [
                "kb",
                "ingest",
                "网页",
                "--url",
                f"{site}/news/library.html",
                "--url",
                f"{site}/logo.png",
                "--json",
            ],
        )
        assert partly.exit_code == 1  # a URL failed: reported, the others ingested
        done = json.loads(partly.stdout)
        assert done["files_total"] == 2 and done["files_failed"] == 1 and "image/png" in done["errors"][0]
        found = _json(runner, "kb", "search", "网页", "图书馆周末开放到几点？", "-k", "1")
        assert found["hits"][0]["source"] == f"{site}/news/library.html"
        assert "晚上九点" in found["hits"][0]["text"]

        queued = _json(
            runner, "kb", "ingest", "网页", str(CORPUS / "tea.md"), "--url", f"{site}/tea", "--background"
        )
    assert queued["kind"] == "kb_ingest" and queued["status"] == "queued" and queued["project"] == "acme/bot"
    assert queued["config"]["server_paths"] == [str((CORPUS / "tea.md").resolve())]
    shown = _json(runner, "jobs", "show", queued["id"])
    assert shown["config"]["urls"] == [f"{site}/tea"]
    busy = runner.invoke(app, ["kb", "ingest", "网页", str(CORPUS / "tea.md"), "--background"])
    assert busy.exit_code != 0 and "already being ingested" in busy.output
    busy = runner.invoke(app, ["kb", "remove", "网页", f"{site}/news/library.html"])
    assert busy.exit_code == 1 and "already being ingested" in busy.stderr
    assert "Traceback" not in busy.output
    nothing = runner.invoke(app, ["kb", "ingest", "网页"])
    assert nothing.exit_code == 2 and "--url" in nothing.output
    bad = runner.invoke(app, ["kb", "ingest", "网页", "--url", "file:///etc/passwd"])
    assert bad.exit_code != 0 and "http" in bad.output and "Traceback" not in bad.output
