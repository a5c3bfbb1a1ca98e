"""The ``kb_ingest`` job kind: ingest files and URLs into a KB on a worker, with progress and ETA.

Config::

    {"kb_id": "…", "server_paths": ["/srv/docs"], "urls": ["https://…"], "tags": ["手册"]}

The gateway (``POST /admin/v1/kb/{kb}/ingest`` and ``…/files``) and ``stratum kb ingest
--background`` queue it; the job runs ``KnowledgeService.ingest`` in the job's child process, so
the gateway only serves. Progress (files, chunks, pages, ETA) goes to the job
(``stratum jobs show``) and from there to ``GET /admin/v1/kb/{kb}/ingest``.

Cancel and crashes: ingest commits each batch of chunks with its document's counter, so a cancelled
job (SIGTERM), a killed child or a killed worker (the lease expires, the job is requeued) leaves
committed batches only; the next attempt (or ``stratum jobs retry``) re-runs the same config and
resumes every partial document — no duplicate and no lost chunks.

One ingest per KB at a time: every ``kb_ingest`` job holds the exclusive key ``kb_ingest:<kb id>``
(``exclusive``), so the store refuses a second queued or running one whichever route submits it,
even when two submissions race past ``check_idle`` (the friendly early answer) together.

``server_paths`` end in ``_paths`` so that the jobs API lets only platform admins submit them
directly; the KB routes check ``STRATUM_KB_INGEST_ROOT`` or store uploads themselves.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratum.engine.base import Encoder
from stratum.errors import Conflict, InvalidRequest, PolicyDenied
from stratum.jobs.context import JobContext
from stratum.jobs.schemas import JobPublic, JobSubmit
from stratum.jobs.service import ExclusiveKeyHeld
from stratum.knowledge import uploads
from stratum.knowledge.schemas import IngestProgress, KbPublic
from stratum.settings import Settings
from stratum.storage import Database

KIND = "kb_ingest"
# Seconds between two progress writes (a file the worker reads); a file boundary always writes.
_PROGRESS_EVERY_S = 0.5
# Fields of ``IngestProgress`` a job's progress carries (the KB progress API reads them back).
PROGRESS_FIELDS = (
    "files_total",
    "files_done",
    "files_skipped",
    "files_failed",
    "chunks_total",
    "chunks_done",
    "chunks_resumed",
    "pages_done",
    "current",
    "elapsed_s",
)


class IngestJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kb_id: str = Field(min_length=1, max_length=32)
    server_paths: list[str] = Field(default_factory=list, max_length=10_000)
    urls: list[str] = Field(default_factory=list, max_length=1000)
    tags: list[str] = Field(default_factory=list, max_length=100)
    batch_size: int = Field(default=32, ge=1, le=4096)

    @model_validator(mode="after")
    def _something(self) -> IngestJobConfig:
        if not self.server_paths and not self.urls:
            raise ValueError("give server_paths and/or urls")
        return self


def validate(config: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = IngestJobConfig(**config)
    except ValidationError as exc:
        messages = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"invalid kb_ingest config: {messages}", param="config") from None
    from stratum.knowledge.web import check_url

    for url in spec.urls:
        check_url(url)
    return spec.model_dump()


def exclusive_key(kb_id: str) -> str:
    """The key every ingest job of the KB holds while queued or running."""
    return f"{KIND}:{kb_id}"


def exclusive(config: dict[str, Any]) -> str:
    """The kind's exclusive key (``JobKind.exclusive``), from a validated config."""
    return exclusive_key(str(config["kb_id"]))


def run(context: JobContext) -> dict[str, Any]:
    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        return execute(context, db, settings)


def execute(
    context: JobContext, db: Database, settings: Settings, *, encoder: Encoder | None = None
) -> dict[str, Any]:
    """The job's body; ``encoder`` replaces the KB's model (tests)."""
    from stratum.knowledge.encoders import load_kb_encoder
    from stratum.knowledge.service import KnowledgeService
    from stratum.knowledge.web import FetchedPage, fetch_pages

    config = IngestJobConfig(**context.config)
    service = KnowledgeService(db)
    kb = service.get_by_id(config.kb_id)
    if context.project is not None and kb.project != context.project:
        raise PolicyDenied(f"knowledge base {kb.name} is not in project {context.project}", rule="kb.project")
    context.log(f"ingesting into {kb.ref}: {len(config.server_paths)} paths, {len(config.urls)} URLs")
    if encoder is None:
        encoder = load_kb_encoder(db, kb.settings.embedding_model)
    pages: list[FetchedPage] = []
    failed: list[str] = []
    if config.urls:
        pages, failed = fetch_pages(
            config.urls,
            context.workdir / "pages",
            timeout=settings.kb_fetch_timeout,
            max_bytes=settings.kb_fetch_max_bytes,
            allow_private=settings.kb_fetch_allow_private,
        )
        for line in failed:
            context.log(f"not fetched: {line}")
        context.log(f"fetched {len(pages)} of {len(config.urls)} pages")
    last = {"at": 0.0, "files": -1}

    def report(state: IngestProgress) -> None:
        now = time.monotonic()
        if state.files_done == last["files"] and now - last["at"] < _PROGRESS_EVERY_S:
            return
        if state.files_done != last["files"]:
            context.log(f"{state.files_done}/{state.files_total} files, {state.chunks_done} chunks")
        last["at"], last["files"] = now, state.files_done
        context.progress(
            state.files_done,
            state.files_total,
            message=state.current,
            eta_s=None if state.eta_s is None else round(state.eta_s, 1),
            **{name: getattr(state, name) for name in PROGRESS_FIELDS if name != "current"},
        )

    result = service.ingest(
        kb,
        [Path(p) for p in config.server_paths] + [page.path for page in pages],
        encoder=encoder,
        tags=config.tags,
        progress=report,
        batch_size=config.batch_size,
        sources={page.path: page.url for page in pages},
        failed=failed,
    )
    last["at"] = 0.0
    last["files"] = -1
    report(result)
    pruned = uploads.prune_superseded(settings.artifacts_dir, kb, [Path(p) for p in config.server_paths])
    if pruned:
        context.log(f"removed {pruned} older uploaded copies of these files")
    for error in result.errors:
        context.log(f"warning: {error}")
    context.metrics.update(
        {
            "chunks_per_s": round((result.chunks_done - result.chunks_resumed) / result.elapsed_s, 2)
            if result.elapsed_s
            else 0.0,
            "pages": result.pages_done,
        }
    )
    summary = result.summary()
    summary.pop("state", None)
    return summary


# --- what the KB routes and CLI use to find a KB's ingest jobs ------------------------------

ACTIVE = ("queued", "running")
_STATES = {"queued": "queued", "running": "running", "succeeded": "done", "failed": "failed"}


def kb_jobs(jobs: Any, kb: KbPublic, *, status: str | None = None, limit: int = 200) -> list[JobPublic]:
    """The KB's ingest jobs, newest first (``jobs`` is a ``JobService``), filtered in the store so
    other KBs' jobs in the project never crowd them out of ``limit``."""
    return cast(
        list[JobPublic],
        jobs.list_jobs(
            project_id=kb.project_id, kind=KIND, config={"kb_id": kb.id}, status=status, limit=limit
        ),
    )


def active_jobs(jobs: Any, kb: KbPublic) -> list[JobPublic]:
    """The KB's queued or running ingest jobs: at most one (the store refuses a second), except
    in a database that already held two before migration 0016 gave ingest jobs their key."""
    return [job for status in ACTIVE for job in kb_jobs(jobs, kb, status=status)]


def check_idle(jobs: Any, kb: KbPublic) -> None:
    """``Conflict`` while an ingest job of the KB is queued or running (two runs would race).

    A fast, friendly answer before an upload is stored; ``submit`` is what guarantees it."""
    active = active_jobs(jobs, kb)
    if active:
        raise busy(kb, active[0])


def busy(kb: KbPublic, holder: JobPublic) -> Conflict:
    """The 409 naming the ingest job ``holder`` that keeps ``kb`` busy."""
    return Conflict(
        f"knowledge base {kb.name} is already being ingested by job {holder.id} "
        f"({holder.status}); wait for it or cancel it",
        param="kb",
    )


def cancel_all(jobs: Any, kb: KbPublic) -> None:
    """Cancel the KB's queued or running ingest jobs (the KB is being deleted)."""
    for job in active_jobs(jobs, kb):
        with contextlib.suppress(Conflict):  # it finished in between
            jobs.cancel(job.id)


def submit(
    jobs: Any,
    kb: KbPublic,
    *,
    server_paths: list[str] | None = None,
    urls: list[str] | None = None,
    tags: list[str] | None = None,
    actor: str = "system",
    batch_size: int = 32,
) -> JobPublic:
    """Queue a ``kb_ingest`` job for ``kb`` in its project; ``Conflict`` (409) naming the job while
    another ingest of the KB is queued or running (the store refuses the second row)."""
    config = {
        "kb_id": kb.id,
        "server_paths": list(server_paths or []),
        "urls": list(urls or []),
        "tags": list(tags or []),
        "batch_size": batch_size,
    }
    spec = JobSubmit(
        kind=KIND,
        config=config,
        name=f"ingest {kb.name}",
        max_attempts=3,
        exclusive_key=exclusive_key(kb.id),
    )
    try:
        submitted: JobPublic = jobs.submit(spec, project=kb.project, actor=actor)
    except ExclusiveKeyHeld as held:
        raise busy(kb, held.holder) from None
    return submitted


def progress_of(job: JobPublic, kb: KbPublic) -> IngestProgress:
    """A job's ingest progress in the KB progress API's shape."""
    source = job.result if job.status == "succeeded" and job.result else job.progress
    values = {name: source[name] for name in PROGRESS_FIELDS if source.get(name) is not None}
    state = "cancelled" if job.status == "cancelled" else _STATES[job.status]
    errors = list(source.get("errors") or [])
    if job.error:
        errors.append(job.error)
    return IngestProgress(
        kb=kb.name,
        state=state,  # type: ignore[arg-type]
        job_id=job.id,
        errors=errors,
        eta_s=job.progress.get("eta_s") if job.status == "running" else None,
        started_at=job.started_at,
        finished_at=job.finished_at,
        **values,
    )
