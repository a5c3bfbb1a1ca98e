"""Knowledge bases through the gateway: admin API (ingest in the background, search) and chat
answering with citations (generator, extractive, refusal, streaming)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratum.engine.fake import FakeEngine
from stratum.jobs.worker import Worker
from tests.gateway.conftest import Gateway
from tests.gateway.kb_jobs import running_worker
from tests.knowledge.conftest import CORPUS


@pytest.fixture
def worker(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """Ingest runs as a job: a worker (threads, the fake encoder) beside the test gateway."""
    with running_worker(gateway.state.db, gateway.state.settings, monkeypatch) as running:
        yield running


@pytest.fixture
def admin(gateway: Gateway, worker: Worker) -> dict[str, str]:
    key, _ = gateway.state.keys.create_key(name="ops", role="admin")
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("library.md", "x1_manual.pdf", "tea.md", "rate_limit.md"):
        shutil.copy(CORPUS / name, folder / name)
    return folder


def _ingested(gateway: Gateway, admin: dict[str, str], docs: Path, **settings: object) -> None:
    from stratum.governance.schemas import OrgCreate, ProjectCreate

    gateway.state.tenancy.create_org(OrgCreate(name="acme"))
    gateway.state.tenancy.create_project("acme", ProjectCreate(name="bot"))
    body = {
        "name": "手册",
        "project": "acme/bot",
        "settings": {
            "embedding_model": "fake-embed",
            "chunk_size": 120,
            "refusal_threshold": 0.0,
            # The 8-d character-hash FakeEncoder has no semantics; rank fusion lets BM25 decide the
            # order these API tests expect (the score-based default follows the dense noise).
            "fusion": "rrf",
            **settings,
        },
    }
    created = gateway.client.post("/admin/v1/kb", json=body, headers=admin)
    assert created.status_code == 201, created.text
    started = gateway.client.post(
        "/admin/v1/kb/手册/ingest", params={"project": "acme/bot"}, json={"paths": [str(docs)]}, headers=admin
    )
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "queued" and started.json()["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = gateway.client.get(
            "/admin/v1/kb/手册/ingest", params={"project": "acme/bot"}, headers=admin
        )
        if progress.json()["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    final = progress.json()
    assert final["state"] == "done" and final["files_done"] == 4 and final["chunks_done"] > 4, final


def test_create_ingest_search_over_the_api(gateway: Gateway, admin: dict[str, str], docs: Path) -> None:
    _ingested(gateway, admin, docs)
    found = gateway.client.post(
        "/admin/v1/kb/手册/search",
        params={"project": "acme/bot"},
        json={"query": "逾期归还 滞纳金", "k": 3},
        headers=admin,
    )
    assert found.status_code == 200, found.text
    top = found.json()["hits"][0]
    assert top["source"] == "library.md" and "零点二元" in top["text"]
    assert set(top) >= {"source", "page", "heading_path", "chunk_id", "text", "score"}
    assert top["heading_path"] == ["青石市图书馆使用指南", "借阅规则"]
    shown = gateway.client.get("/admin/v1/kb/手册", params={"project": "acme/bot"}, headers=admin).json()
    assert shown["documents"] == 4 and shown["chunks"] > 4
    docs_listed = gateway.client.get(
        "/admin/v1/kb/手册/documents", params={"project": "acme/bot"}, headers=admin
    )
    assert {d["source"] for d in docs_listed.json()} == {
        "library.md",
        "x1_manual.pdf",
        "tea.md",
        "rate_limit.md",
    }
    archive = gateway.client.get("/admin/v1/kb/手册/export", params={"project": "acme/bot"}, headers=admin)
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
    bad = gateway.client.post(
        "/admin/v1/kb/手册/search", params={"project": "acme/bot"}, json={"query": ""}, headers=admin
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    missing = gateway.client.post(
        "/admin/v1/kb/nope/search", params={"project": "acme/bot"}, json={"query": "x"}, headers=admin
    )
    assert missing.status_code == 404


def test_ingest_needs_an_ingest_root_for_tenant_keys(
    gateway: Gateway, admin: dict[str, str], docs: Path
) -> None:
    _ingested(gateway, admin, docs)
    developer, _ = gateway.state.keys.create_key(name="dev", role="developer", project="acme/bot")
    denied = gateway.client.post(
        "/admin/v1/kb/手册/ingest",
        json={"paths": [str(docs)]},
        headers={"authorization": f"Bearer {developer}"},
    )
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "kb.ingest_root"


def test_chat_with_a_generator_gets_grounded_prompt_and_citations(
    gateway: Gateway, admin: dict[str, str], docs: Path
) -> None:
    _ingested(gateway, admin, docs)
    changed = gateway.client.patch(
        "/admin/v1/kb/手册",
        params={"project": "acme/bot"},
        json={"settings": {"generator_model": "fake", "top_k": 3}},
        headers=admin,
    )
    assert changed.status_code == 200 and changed.json()["settings"]["generator_model"] == "fake"
    frozen = gateway.client.patch(
        "/admin/v1/kb/手册",
        params={"project": "acme/bot"},
        json={"settings": {"embedding_model": "other"}},
        headers=admin,
    )
    assert frozen.status_code == 400 and frozen.json()["error"]["param"] == "settings.embedding_model"
    bad = gateway.client.patch(
        "/admin/v1/kb/手册", params={"project": "acme/bot"}, json={"settings": {"top_k": 0}}, headers=admin
    )
    assert bad.status_code == 400
    replies = ["借期为三十天 [1]。", "借期为三十天 [1]。"]
    gateway.replies.extend(replies)  # read by the fake engine when it is built …
    for _, engine in gateway.state.pool.loaded():
        if isinstance(engine, FakeEngine):  # … or queued on the one already loaded
            engine.replies.extend(replies)
    body = {"model": "kb/手册", "messages": [{"role": "user", "content": "图书馆借书的借期是多少天？"}]}
    answer = gateway.client.post("/v1/chat/completions", json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["choices"][0]["message"]["content"] == "借期为三十天 [1]。"
    citations = payload["citations"]
    assert citations[0]["index"] == 1 and citations[0]["source"] == "library.md"
    assert set(citations[0]) >= {"source", "page", "chunk_id", "score"} and payload["kb_refused"] is False
    prompt = gateway.engines["fake"].requests[-1].messages
    assert prompt[0]["role"] == "system" and "[1] (library.md" in prompt[0]["content"]
    assert prompt[-1]["content"] == "图书馆借书的借期是多少天？"

    streamed = gateway.client.post("/v1/chat/completions", json={**body, "stream": True}, headers=admin)
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert (
        "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        == "借期为三十天 [1]。"
    )
    assert events[-1]["choices"] == [] and events[-1]["citations"][0]["source"] == "library.md"
    assert streamed.text.rstrip().endswith("data: [DONE]")


def test_knowledge_bases_field_on_any_model(gateway: Gateway, admin: dict[str, str], docs: Path) -> None:
    _ingested(gateway, admin, docs)
    body = {
        "model": "fake",
        "knowledge_bases": ["acme/bot/手册"],
        "messages": [{"role": "user", "content": "龙井茶用多少度的水冲泡？"}],
    }
    answer = gateway.client.post("/v1/chat/completions", json=body, headers=admin).json()
    assert answer["citations"] and answer["citations"][0]["source"] == "tea.md"
    assert "八十度" in gateway.engines["fake"].requests[-1].messages[0]["content"]


def test_extractive_mode_and_refusal(gateway: Gateway, admin: dict[str, str], docs: Path) -> None:
    _ingested(gateway, admin, docs)
    body = {"model": "kb/acme/bot/手册", "messages": [{"role": "user", "content": "X1 音箱保修多久？"}]}
    answer = gateway.client.post("/v1/chat/completions", json=body, headers=admin).json()
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("根据知识库中的资料：\n[1] ") and "两年" in content
    assert ("x1_manual.pdf", 3) in [(c["source"], c["page"]) for c in answer["citations"]]
    streamed = gateway.client.post("/v1/chat/completions", json={**body, "stream": True}, headers=admin)
    assert '"citations"' in streamed.text and "两年" in streamed.text
    gateway.client.delete("/admin/v1/kb/手册", params={"project": "acme/bot"}, headers=admin)
    strict = {"embedding_model": "fake-embed", "refusal_threshold": 0.999}
    gateway.client.post(
        "/admin/v1/kb", json={"name": "strict", "project": "acme/bot", "settings": strict}, headers=admin
    )
    refused = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "kb/acme/bot/strict", "messages": [{"role": "user", "content": "火星上有几座城市？"}]},
        headers=admin,
    ).json()
    assert refused["kb_refused"] is True and refused["citations"] == []
    assert "没有找到" in refused["choices"][0]["message"]["content"]
    bad = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "knowledge_bases": "手册", "messages": [{"role": "user", "content": "x"}]},
        headers=admin,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "knowledge_bases"


def test_grounded_prompt_fits_the_generator_context() -> None:
    from stratum.engine.base import GenerationRequest, ModelInfo, SamplingParams
    from stratum.engine.fake import FakeEngine
    from stratum.gateway.routes.kb_chat import KbChat
    from stratum.knowledge.answer import Grounding
    from stratum.knowledge.schemas import ChunkHit

    engine = FakeEngine()
    engine.info = ModelInfo(context_length=400)  # the fake counts one token per character
    hits = [
        (
            None,
            ChunkHit(
                rank=i,
                chunk_id=f"c{i}",
                source="手册.md",
                page=i,
                heading_path=[],
                text="资料" * 150,
                score=1 / i,
            ),
        )
        for i in (1, 2, 3)
    ]
    citations = [{"index": i, "chunk_id": f"c{i}"} for i in (1, 2, 3)]
    question = [{"role": "user", "content": "问题是什么？"}]
    plan = KbChat(
        model="fake", messages=question, citations=citations, grounding=Grounding("问题是什么？", hits)
    )  # type: ignore[arg-type]
    messages = plan.messages_for(engine, 50)
    used = engine.count_prompt_tokens(
        GenerationRequest(request_id="x", params=SamplingParams(), messages=messages)
    )
    assert used is not None and used <= 350
    assert "[1] (手册.md, p.1)" in messages[0]["content"] and "[2]" not in messages[0]["content"]
    assert plan.citations == citations[:1] and messages[-1] == question[0]
    roomy = KbChat(
        model="fake", messages=question, citations=citations, grounding=Grounding("问题是什么？", hits)
    )  # type: ignore[arg-type]
    engine.info = ModelInfo(context_length=4096)
    assert "[3]" in roomy.messages_for(engine, 50)[0]["content"] and len(roomy.citations) == 3
