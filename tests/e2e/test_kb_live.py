"""End-to-end, the way a user meets knowledge bases: the CLI in subprocesses (ingest killed with
SIGKILL mid-way and resumed), a real server, the ``openai`` SDK with citations, ``stratum kb eval``.

Uses the bundled multilingual-e5-small for embeddings (real retrieval quality) and the tiny local
Llama as a generator (plumbing only: its text is noise, the citations are what is asserted).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from openai import OpenAI

from stratum.knowledge.chunking import chunk_blocks
from stratum.knowledge.extract import extract
from tests.e2e.conftest import STRATUM, KbPlatform
from tests.knowledge.conftest import CORPUS

pytestmark = pytest.mark.slow

FILES = (
    "x1_manual.pdf",
    "safety_rules.pdf",
    "library.md",
    "annual_leave.md",
    "tea.md",
    "security.md",
    "hotpot.txt",
)


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [STRATUM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"stratum {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _count(db: Path, sql: str, kb: str) -> int:
    """``sql`` (with ``{kb}`` standing for the KB's id) on the server's store: it holds other tests' KBs."""
    with sqlite3.connect(db, timeout=30) as connection:
        [kb_id] = connection.execute("SELECT id FROM kb_bases WHERE name = ?", (kb,)).fetchone()
        return int(connection.execute(sql.format(kb="?"), (kb_id,)).fetchone()[0])


def _folder_with_files(tmp_path: Path) -> Path:
    """FILES copied to a Chinese-named folder."""
    folder = tmp_path / "资料"
    folder.mkdir()
    for name in FILES:
        shutil.copy(CORPUS / name, folder / name)
    return folder


def _questions_on_files(tmp_path: Path) -> Path:
    """The eval set's questions whose expected source is among FILES."""
    questions = tmp_path / "questions.jsonl"
    lines = (CORPUS / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions.write_text(
        "\n".join(line for line in lines if json.loads(line)["expected_source"] in FILES), encoding="utf-8"
    )
    return questions


def test_ingest_kill_resume_answer_with_citations_and_eval(tmp_path: Path, kb_platform: KbPlatform) -> None:
    server, env, folder = kb_platform.server, kb_platform.server.env, _folder_with_files(tmp_path)
    _cli(env, "kb", "create", "手册", "--project", "acme/bot", "--chunk-size", "128", "--chunk-overlap", "16")

    # Ingest with small commits and kill -9 once some chunks are stored.
    db = server.home / "stratum.db"
    ingest = subprocess.Popen(
        [STRATUM, "kb", "ingest", "手册", str(folder), "--batch-size", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    stored = 0
    while time.monotonic() < deadline and ingest.poll() is None:
        stored = _count(db, "SELECT count(*) FROM kb_chunks WHERE kb_id = {kb}", "手册")
        if stored >= 4:
            break
        time.sleep(0.05)
    ingest.send_signal(signal.SIGKILL)
    ingest.wait(timeout=30)
    assert ingest.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    assert stored >= 4
    documents = "SELECT count(*) FROM kb_documents WHERE kb_id = {kb}"
    assert _count(db, documents + " AND status = 'partial'", "手册") + _count(
        db, documents, "手册"
    ) < 2 * len(FILES)

    resumed = json.loads(_cli(env, "kb", "ingest", "手册", str(folder), "--json").stdout)
    assert resumed["state"] == "done" and resumed["files_failed"] == 0
    assert resumed["chunks_resumed"] + resumed["files_skipped"] > 0

    # No duplicate and no lost chunk: exactly the chunks a clean chunking of each file gives.
    with sqlite3.connect(db) as connection:
        [kb_id] = connection.execute("SELECT id FROM kb_bases WHERE name = '手册'").fetchone()
        rows = connection.execute(
            "SELECT d.source, c.ordinal, c.text FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
            " WHERE d.kb_id = ?",
            (kb_id,),
        ).fetchall()
        statuses = {
            s for (s,) in connection.execute("SELECT status FROM kb_documents WHERE kb_id = ?", (kb_id,))
        }
    assert statuses == {"done"}
    expected = []
    for name in FILES:
        blocks = extract(folder / name, (folder / name).read_bytes()).blocks
        expected += [(name, i, c.text) for i, c in enumerate(chunk_blocks(blocks, size=128, overlap=16))]
    assert sorted(rows) == sorted(expected)
    again = json.loads(_cli(env, "kb", "ingest", "手册", str(folder), "--json").stdout)
    assert again["files_skipped"] == len(FILES) and again["chunks_done"] == 0

    found = json.loads(_cli(env, "kb", "search", "手册", "X1 音箱保修多久？", "-k", "3", "--json").stdout)
    top = found["hits"][0]
    assert top["source"] == "x1_manual.pdf" and top["page"] == 3 and "两年" in top["text"]
    assert set(top) >= {"source", "page", "heading_path", "chunk_id", "text", "score"}

    with OpenAI(base_url=server.base_url, api_key=kb_platform.key) as client:
        question = [{"role": "user", "content": "新买的 X1 智能音箱保修多长时间？"}]
        reply = client.chat.completions.create(model="kb/手册", messages=question)  # type: ignore[arg-type]
        content = reply.choices[0].message.content or ""
        citations = (reply.model_extra or {})["citations"]
        assert content.startswith("根据知识库中的资料：") and "[1]" in content and "两年" in content
        assert citations[0]["source"] == "x1_manual.pdf" and citations[0]["page"] == 3
        assert citations[0]["chunk_id"] and citations[0]["score"] > 0

        stream = client.chat.completions.create(model="kb/手册", messages=question, stream=True)  # type: ignore[arg-type]
        chunks = list(stream)
        assert (chunks[-1].model_extra or {})["citations"][0]["source"] == "x1_manual.pdf"
        assert "两年" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        generated = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "年假最多可以结转多少天？"}],  # type: ignore[list-item]
            max_tokens=8,
            extra_body={"knowledge_bases": ["手册"]},
        )
        assert (generated.model_extra or {})["citations"][0]["source"] == "annual_leave.md"
        assert generated.usage is not None and generated.usage.prompt_tokens > 50  # the grounded prompt

        refused = client.chat.completions.create(
            model="kb/手册", messages=[{"role": "user", "content": "火星探测器的推进剂是什么型号？"}]
        )
        assert (refused.model_extra or {})["kb_refused"] is True
        assert "没有找到" in (refused.choices[0].message.content or "")

    questions = _questions_on_files(tmp_path)
    report = json.loads(
        _cli(env, "kb", "eval", "手册", str(questions), "--compare", "hybrid,bm25", "--json").stdout
    )
    assert [r["config"].split()[1] for r in report] == ["hybrid", "bm25"]
    assert report[0]["hit@5"] >= 0.8 and report[0]["answer_recall"] >= 0.7


def test_a_kb_on_the_four_layer_student_from_cli_to_sdk(tmp_path: Path, kb_platform: KbPlatform) -> None:
    """The fastest encoder as a user meets it: chosen at `kb create`, ingested and compared with the
    full e5 through `kb eval --against`, served by a real server to the `openai` SDK (its passages
    through four layers, the question through all twelve). The six-layer one: test_eval_hard."""
    server, env, folder = kb_platform.server, kb_platform.server.env, _folder_with_files(tmp_path)
    _cli(env, "kb", "create", "全量", "--project", "acme/bot", "--chunk-size", "128")
    created = json.loads(
        _cli(
            env, "kb", "create", "快速", "--project", "acme/bot", "--chunk-size", "128",
            "--embedding-model", "multilingual-e5-small-4l", "--json",
        ).stdout
    )  # fmt: skip
    assert created["settings"]["embedding_model"] == "multilingual-e5-small-4l"
    for kb in ("全量", "快速"):
        done = json.loads(_cli(env, "kb", "ingest", kb, str(folder), "--json").stdout)
        assert done["state"] == "done" and done["files_done"] == len(FILES), done

    found = json.loads(
        _cli(env, "kb", "search", "快速", "X1 音箱保修多久？", "--mode", "dense", "--json").stdout
    )
    assert found["hits"][0]["source"] == "x1_manual.pdf" and "两年" in found["hits"][0]["text"]

    questions = _questions_on_files(tmp_path)
    report = json.loads(
        _cli(
            env, "kb", "eval", "全量", str(questions), "--compare", "dense", "--against", "快速", "--json"
        ).stdout
    )
    assert [r["config"] for r in report] == [
        "全量 dense (chunk 128, multilingual-e5-small)",
        "快速 dense (chunk 128, multilingual-e5-small-4l)",
    ]
    assert all(r["hit@5"] >= 0.8 for r in report), report

    with OpenAI(base_url=server.base_url, api_key=kb_platform.key) as client:
        assert "multilingual-e5-small-4l" in {m.id for m in client.models.list()}
        reply = client.chat.completions.create(
            model="kb/快速",
            messages=[{"role": "user", "content": "新买的 X1 智能音箱保修多长时间？"}],
        )
        citations = (reply.model_extra or {})["citations"]
        content = reply.choices[0].message.content or ""
        assert citations[0]["source"] == "x1_manual.pdf" and "两年" in content
