"""Ingestion as a ``kb_ingest`` job on a real worker (child processes): progress with files,
chunks and ETA in the job, cancel mid-way then retry, a worker lost mid-way whose job another
worker resumes — each ending with exactly the chunks of an uninterrupted ingest."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stratum.errors import Conflict, InvalidRequest
from stratum.jobs import JobService
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.schemas import JobSubmit, Resources
from stratum.jobs.service import ExclusiveKeyHeld
from stratum.jobs.worker import Worker
from stratum.knowledge import ingest_job
from stratum.knowledge.schemas import KbCreate, KbPublic, KbSettings
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow
from stratum.settings import Settings
from stratum.storage import Database
from tests.conftest import race
from tests.knowledge.conftest import CORPUS, HashEncoder

KINDS = dict(BUILTIN_KINDS) | {
    "kb_ingest": JobKind("tests.knowledge.ingest_handlers:run", "stratum.knowledge.ingest_job:validate")
}
FILES = ("library.md", "tea.md", "annual_leave.md", "hotpot.txt", "x1_manual.pdf", "yangtze.md")


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    url = db.url.render_as_string(hide_password=False)
    return Settings(home=tmp_path / "home", database_url=url, job_lease_seconds=2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "资料"
    target.mkdir()
    for name in FILES:
        shutil.copy(CORPUS / name, target / name)
    return target


def _kb(service: KnowledgeService, project: str, name: str) -> KbPublic:
    settings = KbSettings(embedding_model="hash", chunk_size=40, chunk_overlap=4)
    return service.create(KbCreate(name=name, settings=settings), project=project)


def _worker(db: Database, settings: Settings, worker_id: str) -> Worker:
    capacity = Resources(cpu_threads=2, memory_mb=4096)
    return Worker(db, settings, kinds=KINDS, capacity=capacity, worker_id=worker_id, poll_s=0.05)


def _until(workers: list[Worker], done: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for worker in workers:
            worker.tick()
        time.sleep(0.05)


def _chunks(db: Database, kb: KbPublic) -> list[tuple[str, int, str]]:
    with db.session(write=False) as session:
        rows = session.execute(
            select(KbDocumentRow.source, KbChunkRow.ordinal, KbChunkRow.text)
            .join(KbDocumentRow, KbDocumentRow.id == KbChunkRow.document_id)
            .where(KbChunkRow.kb_id == kb.id)
            .order_by(KbDocumentRow.source, KbChunkRow.ordinal)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _reference(db: Database, service: KnowledgeService, project: str, folder: Path) -> list[tuple[str, str]]:
    kb = _kb(service, project, "参照")
    service.ingest(kb, [folder], encoder=HashEncoder())
    return [(source, text) for source, _, text in _chunks(db, kb)]


def _mid_file(service: KnowledgeService, kb: KbPublic) -> bool:
    """A document is half written, with batches still to go: the moment to interrupt."""
    return any(
        d.status == "partial" and d.chunks_done >= 1 and d.chunks_total - d.chunks_done >= 3
        for d in service.documents(kb)
    )


def _assert_complete(db: Database, kb: KbPublic, reference: list[tuple[str, str]]) -> None:
    chunks = _chunks(db, kb)
    assert [(s, t) for s, _, t in chunks] == reference  # nothing lost, nothing twice, same order
    with db.session(write=False) as session:
        statuses = session.scalars(select(KbDocumentRow.status).where(KbDocumentRow.kb_id == kb.id)).all()
        dupes = session.scalar(
            select(func.count())
            .select_from(KbChunkRow)
            .where(KbChunkRow.kb_id == kb.id)
            .group_by(KbChunkRow.document_id, KbChunkRow.ordinal)
            .having(func.count() > 1)
        )
    assert set(statuses) == {"done"} and dupes is None


def test_validate_names_what_is_wrong() -> None:
    with pytest.raises(InvalidRequest, match="server_paths and/or urls"):
        ingest_job.validate({"kb_id": "x"})
    with pytest.raises(InvalidRequest, match="http"):
        ingest_job.validate({"kb_id": "x", "urls": ["file:///etc/passwd"]})
    with pytest.raises(InvalidRequest, match="batch_size"):
        ingest_job.validate({"kb_id": "x", "urls": ["http://a.example/"], "batch_size": 0})


def test_a_job_of_another_project_may_not_ingest_into_this_kb(
    db: Database, service: KnowledgeService, project: str, settings: Settings, folder: Path
) -> None:
    from stratum.governance.schemas import ProjectCreate
    from stratum.governance.tenancy import TenancyService

    TenancyService(db).create_project("acme", ProjectCreate(name="other"))
    kb = _kb(service, project, "docs")
    jobs = JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)
    job = jobs.submit(
        JobSubmit(kind="kb_ingest", config={"kb_id": kb.id, "server_paths": [str(folder)]}, max_attempts=1),
        project="acme/other",
    )
    _until([_worker(db, settings, "w1")], lambda: jobs.get(job.id).status == "failed")
    assert "not in project acme/other" in str(jobs.get(job.id).error)
    assert _chunks(db, kb) == []


def test_concurrent_ingests_of_one_kb_queue_exactly_one(
    db: Database, service: KnowledgeService, project: str, settings: Settings, folder: Path
) -> None:
    """Every submitter passes ``check_idle`` before any of them queues (the race the check alone
    lost); the store still queues one job, and the others get the KB's 409 naming it."""
    kb = _kb(service, project, "手册")
    other = _kb(service, project, "别的")
    jobs = JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)
    threads = 8
    checked = threading.Barrier(threads)

    def submit() -> str:
        ingest_job.check_idle(jobs, kb)
        checked.wait()
        return ingest_job.submit(jobs, kb, server_paths=[str(folder)]).id

    queued, errors = race(threads, submit, Conflict)
    refused = [error.message for error in errors]
    assert len(queued) == 1 and len(refused) == threads - 1
    assert set(refused) == {
        f"knowledge base 手册 is already being ingested by job {queued[0]} (queued); wait for it or cancel it"
    }
    assert [job.id for job in ingest_job.active_jobs(jobs, kb)] == queued
    assert jobs.get(queued[0]).exclusive_key == f"kb_ingest:{kb.id}"
    # Another KB of the project is not held up.
    assert ingest_job.submit(jobs, other, server_paths=[str(folder)]).status == "queued"


def test_the_kind_gives_every_ingest_job_its_kbs_key(
    db: Database, service: KnowledgeService, project: str, settings: Settings, folder: Path
) -> None:
    """A ``kb_ingest`` job queued without ``ingest_job.submit`` (``POST …/jobs``, ``stratum jobs
    submit``) holds the KB's key all the same."""
    kb = _kb(service, project, "手册")
    jobs = JobService(db, jobs_dir=settings.jobs_dir)  # the builtin kinds
    spec = JobSubmit(kind="kb_ingest", config={"kb_id": kb.id, "server_paths": [str(folder)]})
    first = jobs.submit(spec, project=project)
    assert first.exclusive_key == ingest_job.exclusive_key(kb.id) == f"kb_ingest:{kb.id}"
    with pytest.raises(ExclusiveKeyHeld, match=first.id):
        jobs.submit(spec, project=project)
    with pytest.raises(Conflict, match=f"already being ingested by job {first.id}"):
        ingest_job.submit(jobs, kb, urls=["https://example.cn/"])


@pytest.mark.slow
def test_progress_cancel_and_retry_resume_without_duplicates(
    db: Database,
    service: KnowledgeService,
    project: str,
    settings: Settings,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = _reference(db, service, project, folder)
    kb = _kb(service, project, "手册")
    monkeypatch.setenv("STRATUM_TEST_ENCODE_SLEEP", "0.3")
    jobs = JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)
    job = ingest_job.submit(jobs, kb, server_paths=[str(folder)], tags=["手册"], batch_size=1)
    assert job.kind == "kb_ingest" and job.project == project
    worker = _worker(db, settings, "w1")
    _until([worker], lambda: jobs.get(job.id).progress.get("chunks_done", 0) >= 12 and _mid_file(service, kb))
    running = jobs.get(job.id)
    progress = running.progress
    assert running.status == "running" and progress["total"] == len(FILES)
    assert progress["files_total"] == len(FILES) and progress["chunks_total"] >= progress["chunks_done"]
    assert progress["eta_s"] is not None and progress["eta_s"] > 0
    shown = ingest_job.progress_of(running, kb)
    assert shown.state == "running" and shown.job_id == job.id and shown.chunks_done >= 12
    with pytest.raises(Exception, match="already being ingested"):
        ingest_job.check_idle(jobs, kb)

    jobs.cancel(job.id)
    _until([worker], lambda: jobs.get(job.id).status == "cancelled")
    partial = len(_chunks(db, kb))
    assert 0 < partial < len(reference)
    assert ingest_job.progress_of(jobs.get(job.id), kb).state == "cancelled"

    monkeypatch.setenv("STRATUM_TEST_ENCODE_SLEEP", "0")
    jobs.retry(job.id)
    _until([worker], lambda: jobs.get(job.id).status == "succeeded")
    done = jobs.get(job.id)
    assert done.result["chunks_resumed"] > 0 and done.result["files_done"] == len(FILES)
    final = ingest_job.progress_of(done, kb)
    assert final.state == "done" and final.files_done == len(FILES) and final.eta_s is None
    assert "6/6 files" in jobs.logs(job.id).text
    _assert_complete(db, kb, reference)


@pytest.mark.slow
def test_a_lost_worker_job_is_resumed_by_another_worker(
    db: Database,
    service: KnowledgeService,
    project: str,
    settings: Settings,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = _reference(db, service, project, folder)
    kb = _kb(service, project, "手册")
    monkeypatch.setenv("STRATUM_TEST_ENCODE_SLEEP", "0.3")
    jobs = JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)
    job = ingest_job.submit(jobs, kb, server_paths=[str(folder)], batch_size=1)
    first = _worker(db, settings, "w1")
    _until([first], lambda: jobs.get(job.id).progress.get("chunks_done", 0) >= 12 and _mid_file(service, kb))
    # The first worker dies (as with SIGKILL: it stops heart-beating, its child is killed).
    child = next(iter(first.running.values())).execution
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    child.wait(10)
    partial = len(_chunks(db, kb))
    assert 0 < partial < len(reference)

    monkeypatch.setenv("STRATUM_TEST_ENCODE_SLEEP", "0")
    second = _worker(db, settings, "w2")
    _until([second], lambda: jobs.get(job.id).status == "succeeded")
    done = jobs.get(job.id)
    assert done.attempts == 2 and done.worker_id == "w2"
    assert done.result["chunks_resumed"] >= 1 and done.result["files_skipped"] >= 1
    _assert_complete(db, kb, reference)
