"""KB ingestion through the API as jobs: multipart uploads (Chinese Markdown and PDF), URLs,
the size limit, file-name checks, per-KB write roles, one ingest at a time, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.jobs.schemas import JobSubmit
from stratum.knowledge import ingest_job
from stratum.knowledge.schemas import KbCreate, KbSettings, KbUpdate
from stratum.knowledge.uploads import uploads_dir
from tests.gateway.conftest import Gateway
from tests.gateway.kb_jobs import running_worker
from tests.knowledge.conftest import CORPUS
from tests.knowledge.pages import serving

KB = "/admin/v1/kb/资料"


@pytest.fixture
def keys(gateway: Gateway) -> dict[str, dict[str, str]]:
    state = gateway.state
    state.tenancy.create_org(OrgCreate(name="acme"))
    state.tenancy.create_project("acme", ProjectCreate(name="bot"))
    settings = KbSettings(embedding_model="fake-embed", chunk_size=80, chunk_overlap=8)
    state.knowledge.create(KbCreate(name="资料", settings=settings), project="acme/bot")
    out = {}
    for role in ("developer", "viewer"):
        key, _ = state.keys.create_key(name=role, role=role, project="acme/bot")
        out[role] = {"authorization": f"Bearer {key}"}
    return out


@pytest.fixture
def worker(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with running_worker(gateway.state.db, gateway.state.settings, monkeypatch):
        yield


def _wait(gateway: Gateway, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        progress = gateway.client.get(f"{KB}/ingest", headers=headers).json()
        if progress["state"] in ("done", "failed", "cancelled"):
            return progress  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)


def _files(*names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, (CORPUS / name).read_bytes(), "application/octet-stream")) for name in names]


def test_upload_chinese_markdown_and_pdf_then_search(
    gateway: Gateway, keys: dict[str, dict[str, str]], worker: None
) -> None:
    developer = keys["developer"]
    sent = gateway.client.post(
        f"{KB}/files", files=_files("library.md", "x1_manual.pdf"), data={"tags": ["手册"]}, headers=developer
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["state"] == "queued" and sent.json()["job_id"]
    final = _wait(gateway, developer)
    assert final["state"] == "done" and final["files_done"] == 2 and final["chunks_done"] > 2, final
    assert final["pages_done"] >= 2 and final["job_id"] == sent.json()["job_id"]
    job = gateway.client.get(f"/admin/v1/orgs/acme/projects/bot/jobs/{final['job_id']}", headers=developer)
    assert job.status_code == 200 and job.json()["kind"] == "kb_ingest"
    assert (
        job.json()["progress"]["files_done"] == 2
        and job.json()["result"]["chunks_done"] == final["chunks_done"]
    )
    documents = gateway.client.get(f"{KB}/documents", headers=developer).json()
    assert {d["source"] for d in documents} == {"library.md", "x1_manual.pdf"}
    assert all(d["tags"] == ["手册"] for d in documents)
    kb_id = gateway.state.knowledge.get(project="acme/bot", name="资料").id
    stored = list((gateway.state.settings.artifacts_dir / "kb-uploads" / kb_id).rglob("*"))
    assert {p.name for p in stored if p.is_file()} == {"library.md", "x1_manual.pdf"}
    hits = gateway.client.post(
        f"{KB}/search", json={"query": "逾期归还 滞纳金", "k": 3}, headers=developer
    ).json()
    assert any(h["source"] == "library.md" for h in hits["hits"])

    # A changed file with the same name replaces that document's chunks.
    changed = [
        ("files", ("library.md", "# 图书馆\n\n新规定：图书馆二十四小时开放。\n".encode(), "text/markdown"))
    ]
    assert gateway.client.post(f"{KB}/files", files=changed, headers=developer).status_code == 202
    assert _wait(gateway, developer)["state"] == "done"
    hits = gateway.client.post(
        f"{KB}/search", json={"query": "二十四小时", "k": 5, "mode": "bm25"}, headers=developer
    )
    library = [h for h in hits.json()["hits"] if h["source"] == "library.md"]
    assert library and all("二十四小时" in h["text"] for h in library)
    assert len(gateway.client.get(f"{KB}/documents", headers=developer).json()) == 2
    # The older upload's copy of library.md went with its chunks; its PDF still backs a document.
    stored = [
        p for p in (gateway.state.settings.artifacts_dir / "kb-uploads" / kb_id).rglob("*") if p.is_file()
    ]
    assert sorted(p.name for p in stored) == ["library.md", "x1_manual.pdf"]
    assert "二十四小时" in next(p for p in stored if p.name == "library.md").read_text("utf-8")
    assert gateway.client.delete(KB, headers=developer).status_code == 204
    assert not (gateway.state.settings.artifacts_dir / "kb-uploads" / kb_id).exists()


def test_remove_documents_with_their_chunks_and_uploads(
    gateway: Gateway, keys: dict[str, dict[str, str]], worker: None
) -> None:
    developer, viewer = keys["developer"], keys["viewer"]
    assert (
        gateway.client.post(
            f"{KB}/files", files=_files("tea.md", "library.md"), headers=developer
        ).status_code
        == 202
    )
    assert _wait(gateway, developer)["state"] == "done"
    kb_id = gateway.state.knowledge.get(project="acme/bot", name="资料").id
    uploads = gateway.state.settings.artifacts_dir / "kb-uploads" / kb_id

    def sources() -> set[str]:
        return {d["source"] for d in gateway.client.get(f"{KB}/documents", headers=developer).json()}

    def bm25(query: str) -> set[str]:
        body = {"query": query, "k": 10, "mode": "bm25"}
        return {
            h["source"]
            for h in gateway.client.post(f"{KB}/search", json=body, headers=developer).json()["hits"]
        }

    assert "tea.md" in bm25("龙井 水温")
    denied = gateway.client.delete(f"{KB}/documents", params={"source": "tea.md"}, headers=viewer)
    assert denied.status_code == 403
    # All named or none: an unknown source removes nothing.
    unknown = gateway.client.delete(
        f"{KB}/documents", params={"source": ["tea.md", "没有.md"]}, headers=developer
    )
    assert unknown.status_code == 404, unknown.text
    assert (
        unknown.json()["error"]["code"] == "document_not_found"
        and "没有.md" in unknown.json()["error"]["message"]
    )
    assert sources() == {"tea.md", "library.md"}

    removed = gateway.client.delete(f"{KB}/documents", params={"source": "tea.md"}, headers=developer)
    assert removed.status_code == 200, removed.text
    assert [d["source"] for d in removed.json()] == ["tea.md"] and removed.json()[0]["chunks_done"] > 0
    assert sources() == {"library.md"}
    assert "tea.md" not in bm25("龙井 水温") and "library.md" in bm25("逾期归还 滞纳金")
    assert sorted(p.name for p in uploads.rglob("*") if p.is_file()) == ["library.md"]
    again = gateway.client.delete(f"{KB}/documents", params={"source": "tea.md"}, headers=developer)
    assert again.status_code == 404
    none = gateway.client.delete(f"{KB}/documents", headers=developer)
    assert none.status_code == 400 and none.json()["error"]["type"] == "invalid_request_error"

    # The last document goes with its upload folder.
    assert (
        gateway.client.delete(
            f"{KB}/documents", params={"source": "library.md"}, headers=developer
        ).status_code
        == 200
    )
    assert sources() == set() and list(uploads.iterdir()) == []


def test_remove_documents_waits_for_a_running_ingest(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    developer = keys["developer"]
    # No worker: the upload's job stays queued.
    assert gateway.client.post(f"{KB}/files", files=_files("tea.md"), headers=developer).status_code == 202
    busy = gateway.client.delete(f"{KB}/documents", params={"source": "tea.md"}, headers=developer)
    assert busy.status_code == 409 and "already being ingested" in busy.json()["error"]["message"]


def test_upload_limits_names_and_roles(
    gateway: Gateway, keys: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    developer = keys["developer"]
    gateway.state.settings.kb_upload_max_bytes = 1000
    big = [("files", ("大文件.md", "大".encode() * 1000, "text/markdown"))]
    too_big = gateway.client.post(f"{KB}/files", files=big, headers=developer)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    for name, expected in ((".hidden.md", "plain file name"), ("tool.exe", "unsupported file type")):
        bad = gateway.client.post(
            f"{KB}/files", files=[("files", (name, b"x", "text/plain"))], headers=developer
        )
        assert bad.status_code == 400 and expected in bad.json()["error"]["message"], bad.text
    twice = gateway.client.post(f"{KB}/files", files=_files("tea.md", "tea.md"), headers=developer)
    assert twice.status_code == 400 and "twice" in twice.json()["error"]["message"]
    # A path in the file name is cut to the name: nothing is written outside the upload folder.
    sneaky = [("files", ("../../逃逸.md", "# 标题\n\n内容".encode(), "text/markdown"))]
    assert gateway.client.post(f"{KB}/files", files=sneaky, headers=developer).status_code == 202
    assert not (gateway.state.settings.artifacts_dir / "逃逸.md").exists()
    uploads = gateway.state.settings.artifacts_dir / "kb-uploads"
    assert [p.name for p in uploads.rglob("*.md")] == ["逃逸.md"]  # the 413 and 400 left nothing behind
    viewer = gateway.client.post(f"{KB}/files", files=_files("tea.md"), headers=keys["viewer"])
    assert viewer.status_code == 403
    missing = gateway.client.post(f"{KB}/files", headers=developer)
    assert missing.status_code in (400, 422) and "error" in missing.json()


def test_one_ingest_at_a_time_and_cancel(gateway: Gateway, keys: dict[str, dict[str, str]]) -> None:
    """No worker runs here: the first job stays queued."""
    developer = keys["developer"]
    first = gateway.client.post(f"{KB}/files", files=_files("tea.md"), headers=developer)
    assert first.status_code == 202 and first.json()["state"] == "queued"
    second = gateway.client.post(f"{KB}/files", files=_files("bike.md"), headers=developer)
    assert second.status_code == 409 and first.json()["job_id"] in second.json()["error"]["message"]
    urls = gateway.client.post(f"{KB}/ingest", json={"urls": ["https://example.cn/a"]}, headers=developer)
    assert urls.status_code == 409
    bad = gateway.client.post(f"{KB}/ingest", json={"urls": ["file:///etc/passwd"]}, headers=developer)
    assert bad.status_code == 400 and "http" in bad.json()["error"]["message"]
    empty = gateway.client.post(f"{KB}/ingest", json={}, headers=developer)
    assert empty.status_code in (400, 422)
    assert gateway.client.delete(f"{KB}/ingest", headers=keys["viewer"]).status_code == 403
    cancelled = gateway.client.delete(f"{KB}/ingest", headers=developer)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert gateway.client.get(f"{KB}/ingest", headers=developer).json()["state"] == "cancelled"
    assert gateway.client.delete(f"{KB}/ingest", headers=developer).status_code == 409
    # Deleting the KB cancels a queued ingest of it.
    queued = gateway.client.post(f"{KB}/files", files=_files("bike.md"), headers=developer).json()
    assert gateway.client.delete(KB, headers=developer).status_code == 204
    assert gateway.state.jobs.get(queued["job_id"]).status == "cancelled"


@pytest.mark.parametrize("route", ["ingest", "files"])
def test_two_concurrent_ingests_queue_one_job_and_answer_one_409(
    gateway: Gateway, keys: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """Both requests pass the early ``check_idle`` before either queues (the race it alone lost):
    the store queues one job, the other request gets the KB's OpenAI-shaped 409 naming it (and its
    upload is removed)."""
    check_idle = ingest_job.check_idle
    both_checked = threading.Barrier(2, timeout=30)

    def racing_check(jobs: Any, kb: Any) -> None:
        check_idle(jobs, kb)
        both_checked.wait()

    monkeypatch.setattr(ingest_job, "check_idle", racing_check)
    replies: list[Any] = []

    def post(name: str) -> None:
        headers = keys["developer"]
        if route == "ingest":
            body = {"urls": [f"https://example.cn/{name}"]}
            replies.append(gateway.client.post(f"{KB}/ingest", json=body, headers=headers))
        else:
            replies.append(gateway.client.post(f"{KB}/files", files=_files(name), headers=headers))

    threads = [threading.Thread(target=post, args=(name,)) for name in ("tea.md", "bike.md")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    accepted, refused = sorted(replies, key=lambda reply: reply.status_code)
    assert (accepted.status_code, refused.status_code) == (202, 409), [r.text for r in replies]
    job_id = accepted.json()["job_id"]
    assert refused.json() == {
        "error": {
            "message": f"knowledge base 资料 is already being ingested by job {job_id} (queued); "
            "wait for it or cancel it",
            "type": "conflict_error",
            "param": "kb",
            "code": None,
        }
    }
    jobs = gateway.state.jobs.list_jobs(kind="kb_ingest")
    assert [job.id for job in jobs] == [job_id]
    if route == "files":
        kb = gateway.state.knowledge.get(project="acme/bot", name="资料")
        uploads = list(uploads_dir(gateway.state.settings.artifacts_dir, kb).iterdir())
        assert [str(folder) for folder in uploads] == jobs[0].config["server_paths"]


def test_urls_through_the_api(
    gateway: Gateway, keys: dict[str, dict[str, str]], worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    developer = keys["developer"]
    with serving() as site:
        # By default a key cannot make the server fetch loopback addresses.
        sent = gateway.client.post(f"{KB}/ingest", json={"urls": [f"{site}/tea"]}, headers=developer)
        assert sent.status_code == 202, sent.text
        refused = _wait(gateway, developer)
        assert refused["state"] == "done" and refused["files_failed"] == 1
        assert "private or loopback" in refused["errors"][0]

        monkeypatch.setenv("STRATUM_KB_FETCH_ALLOW_PRIVATE", "true")
        urls = [f"{site}/news/library.html", f"{site}/tea", f"{site}/hotpot.txt"]
        sent = gateway.client.post(f"{KB}/ingest", json={"urls": urls}, headers=developer)
        assert sent.status_code == 202, sent.text
        final = _wait(gateway, developer)
    assert final["state"] == "done" and final["files_done"] == 3 and final["files_failed"] == 0, final
    sources = {d["source"] for d in gateway.client.get(f"{KB}/documents", headers=developer).json()}
    assert sources == set(urls)
    hits = gateway.client.post(
        f"{KB}/search", json={"query": "龙井 水温", "k": 1, "mode": "bm25"}, headers=developer
    )
    assert hits.json()["hits"][0]["source"] == f"{site}/tea"


def test_the_jobs_api_lets_only_admins_name_server_paths(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    kb_id = gateway.state.knowledge.get(project="acme/bot", name="资料").id
    body = {"kind": "kb_ingest", "config": {"kb_id": kb_id, "server_paths": ["/etc"]}}
    denied = gateway.client.post(
        "/admin/v1/orgs/acme/projects/bot/jobs", json=body, headers=keys["developer"]
    )
    assert denied.status_code == 403 and "server_paths" in denied.json()["error"]["message"]
    bad = {"kind": "kb_ingest", "config": {"kb_id": kb_id, "urls": ["gopher://x"]}}
    refused = gateway.client.post(
        "/admin/v1/orgs/acme/projects/bot/jobs", json=bad, headers=keys["developer"]
    )
    assert refused.status_code == 400 and "http" in refused.json()["error"]["message"]


def test_the_jobs_api_checks_the_kbs_roles_and_project(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    """A ``jobs.write`` key cannot use ``POST …/jobs`` to ingest into a KB its role may not write,
    nor into another project's KB: the same check as the KB's own ingest route."""
    state = gateway.state
    locked = KbSettings(embedding_model="fake-embed", write_roles=["org_admin"])
    kb = state.knowledge.create(KbCreate(name="机密", settings=locked), project="acme/bot")
    state.tenancy.create_project("acme", ProjectCreate(name="other"))
    foreign = state.knowledge.create(KbCreate(name="外部", settings=KbSettings()), project="acme/other")
    jobs = "/admin/v1/orgs/acme/projects/bot/jobs"
    developer = keys["developer"]
    urls = ["https://example.cn/机密"]

    via_kb = gateway.client.post("/admin/v1/kb/机密/ingest", json={"urls": urls}, headers=developer)
    assert via_kb.status_code == 403, via_kb.text
    body = {"kind": "kb_ingest", "config": {"kb_id": kb.id, "urls": urls}}
    via_jobs = gateway.client.post(jobs, json=body, headers=developer)
    assert via_jobs.status_code == 403 and "机密" in via_jobs.json()["error"]["message"], via_jobs.text
    other = {"kind": "kb_ingest", "config": {"kb_id": foreign.id, "urls": urls}}
    assert gateway.client.post(jobs, json=other, headers=developer).status_code == 404
    no_id = gateway.client.post(jobs, json={"kind": "kb_ingest", "config": {"urls": urls}}, headers=developer)
    assert no_id.status_code == 400
    assert state.jobs.list_jobs(kind="kb_ingest") == []

    # A KB the developer may write: accepted once, then 409 while that ingest is queued.
    open_kb = state.knowledge.get(project="acme/bot", name="资料")
    ok = {"kind": "kb_ingest", "config": {"kb_id": open_kb.id, "urls": urls}}
    first = gateway.client.post(jobs, json=ok, headers=developer)
    assert first.status_code == 201, first.text
    assert gateway.client.post(jobs, json=ok, headers=developer).status_code == 409

    # Retrying an ingest the developer may not run (an admin queued it into the locked KB) is
    # refused too; once the KB lets developers write, the same retry goes through.
    queued = state.jobs.submit(
        JobSubmit(kind="kb_ingest", config={"kb_id": kb.id, "urls": urls}), project="acme/bot"
    )
    state.jobs.cancel(queued.id)
    retry = f"{jobs}/{queued.id}/retry"
    refused = gateway.client.post(retry, headers=developer)
    assert refused.status_code == 403, refused.text
    state.knowledge.update(kb, KbUpdate(settings={"write_roles": ["org_admin", "developer"]}))
    assert gateway.client.post(retry, headers=developer).status_code == 200
