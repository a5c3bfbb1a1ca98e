"""``/admin/v1/kb``: knowledge bases of a project — create, list, show, delete, ingest, search, export.

Every route names the project with ``?project=ORG/PROJECT`` (or the body's ``project`` when
creating); a project key (developer, viewer) may leave it out and gets its own project. The
policy decides ``kb.read`` / ``kb.write`` on that project (so keys of other projects get the
tenancy 403, whatever the KB name), then the KB's own role lists (rule ``kb.acl``).

Ingestion runs as a ``kb_ingest`` job (``knowledge.ingest_job``) on a worker, never in the
gateway: from server files (allowed under ``STRATUM_KB_INGEST_ROOT`` when it is set, otherwise for
platform admins only), from http(s) URLs, or from files uploaded to ``POST …/files``.
``GET …/ingest`` shows the latest job's progress, ``DELETE …/ingest`` cancels it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath

import anyio
from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from stratum.engine.base import Encoder
from stratum.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge, PolicyDenied
from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.gateway.state import AppState
from stratum.governance.schemas import ProjectPublic
from stratum.knowledge import ingest_job, removal, uploads
from stratum.knowledge.archive import export_kb
from stratum.knowledge.extract import SUFFIXES, supported
from stratum.knowledge.schemas import (
    DocumentPublic,
    IngestProgress,
    IngestRequest,
    KbCreate,
    KbPublic,
    KbUpdate,
    SearchRequest,
    SearchResult,
)
from stratum.knowledge.service import KnowledgeService, check_access
from stratum.knowledge.web import check_url

router = APIRouter(prefix="/admin/v1", tags=["knowledge"])
ProjectParam = Query(default=None, description="ORG/PROJECT; a project key's own project by default.")


def knowledge(state: AppState) -> KnowledgeService:
    assert state.knowledge is not None
    return state.knowledge


async def _project(context: RequestContext, state: AppState, path: str | None, action: str) -> ProjectPublic:
    principal = context.principal
    if path is None:
        if principal.project is None or principal.org is None:
            raise InvalidRequest("name the knowledge base's project: ?project=ORG/PROJECT", param="project")
        path = principal.project.name  # a project tenant is named by its ORG/PROJECT path
    try:
        found = await anyio.to_thread.run_sync(state.tenancy.get_project, path)
    except NotFound as error:
        raise context.denied_unless_admin(error) from None
    except InvalidRequest:
        raise context.denied_unless_admin(NotFound(f"No project {path!r}.", param="project")) from None
    await context.authorize(action, org_id=found.org_id, project_id=found.id)
    return found


async def resolve_kb(
    context: RequestContext, state: AppState, name: str, project: str | None, mode: str
) -> KbPublic:
    """The KB ``name`` of the project, once the policy and the KB's roles allow ``mode``."""
    found = await _project(context, state, project, f"kb.{mode}")
    kb = await anyio.to_thread.run_sync(lambda: knowledge(state).get(project=found.path, name=name))
    check_access(kb, context.principal.role, mode)
    return kb


async def kb_encoder(state: AppState, kb: KbPublic) -> Encoder | None:
    if kb.settings.retrieval == "bm25":
        return None
    _, encoder = await state.pool.encoder(kb.settings.embedding_model)
    return encoder


@router.get("/kb", response_model=list[KbPublic])
async def list_kbs(
    context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> list[KbPublic]:
    """Knowledge bases of a project (or, for org and platform admins without ?project, all they may see)."""
    principal = context.principal
    if project is None and principal.role in ("admin", "org_admin"):
        org_id = None if principal.is_admin else (principal.org.id if principal.org else "-")
        await context.authorize("kb.read", org_id=org_id)
        found = await anyio.to_thread.run_sync(lambda: knowledge(state).list(org_id=org_id))
    else:
        scope = await _project(context, state, project, "kb.read")
        found = await anyio.to_thread.run_sync(lambda: knowledge(state).list(project_id=scope.id))
    readable = []
    for kb in found:
        try:
            check_access(kb, principal.role, "read")
        except PolicyDenied:
            continue
        readable.append(kb)
    return readable


@router.post("/kb", response_model=KbPublic, status_code=status.HTTP_201_CREATED)
async def create_kb(spec: KbCreate, context: ContextDep, state: StateDep) -> KbPublic:
    found = await _project(context, state, spec.project, "kb.write")
    return await anyio.to_thread.run_sync(lambda: knowledge(state).create(spec, project=found.path))


@router.get("/kb/{kb}", response_model=KbPublic)
async def get_kb(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> KbPublic:
    return await resolve_kb(context, state, kb, project, "read")


@router.patch("/kb/{kb}", response_model=KbPublic)
async def update_kb(
    kb: str, change: KbUpdate, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> KbPublic:
    """Change settings (generator, refusal threshold, retrieval, roles, chunking for new files)."""
    found = await resolve_kb(context, state, kb, project, "write")
    return await anyio.to_thread.run_sync(lambda: knowledge(state).update(found, change))


@router.get("/kb/{kb}/documents", response_model=list[DocumentPublic])
async def list_documents(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> list[DocumentPublic]:
    found = await resolve_kb(context, state, kb, project, "read")
    return await anyio.to_thread.run_sync(lambda: knowledge(state).documents(found))


@router.delete("/kb/{kb}/documents", response_model=list[DocumentPublic])
async def remove_documents(
    kb: str,
    context: ContextDep,
    state: StateDep,
    # Not required by FastAPI: a caller of another project gets its 403 before any 400 (the
    # service refuses an empty list once access is checked).
    source: list[str] = Query(default=[], description="A document's source, as listed (repeatable)."),
    project: str | None = ProjectParam,
) -> list[DocumentPublic]:
    """Remove documents with their chunks (all named or none: 404 naming the unknown ones), and
    their uploaded files; 409 while an ingest of the KB is queued or running."""
    found = await resolve_kb(context, state, kb, project, "write")

    return await anyio.to_thread.run_sync(
        lambda: removal.remove_documents(
            state.jobs, knowledge(state), found, source, state.settings.artifacts_dir
        )
    )


@router.delete("/kb/{kb}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_kb(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> Response:
    found = await resolve_kb(context, state, kb, project, "write")

    await anyio.to_thread.run_sync(
        lambda: removal.delete_kb(state.jobs, knowledge(state), found, state.settings.artifacts_dir)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _check_server_paths(context: RequestContext, state: AppState, raw: list[str]) -> list[Path]:
    paths = [Path(p).expanduser().resolve() for p in raw]
    root = state.settings.kb_ingest_root
    if root is not None:
        outside = [str(p) for p in paths if not p.is_relative_to(root.resolve())]
        if outside:
            raise PolicyDenied(
                f"paths outside STRATUM_KB_INGEST_ROOT: {', '.join(outside)}", rule="kb.ingest_root"
            )
    elif paths and not context.principal.is_admin:
        raise PolicyDenied(
            "reading server files needs STRATUM_KB_INGEST_ROOT set, or a platform admin key",
            rule="kb.ingest_root",
        )
    for path in paths:
        if not path.exists():
            raise InvalidRequest(f"no such file or folder on the server: {path}", param="paths")
    return paths


async def authorize_ingest(context: RequestContext, state: AppState, kb: KbPublic) -> None:
    """The check every ``kb_ingest`` submission passes, whichever route queues it (these KB routes
    or ``POST /admin/v1/orgs/…/jobs``): the policy's ``kb.write`` on the KB's project, the KB's own
    write roles, and no other ingest of the KB queued or running (an early 409; ``ingest_job.submit``
    and the store's exclusive key guarantee it when submissions race)."""
    await context.authorize("kb.write", org_id=kb.org_id, project_id=kb.project_id)
    check_access(kb, context.principal.role, "write")
    await anyio.to_thread.run_sync(lambda: ingest_job.check_idle(state.jobs, kb))


async def authorize_ingest_job(
    context: RequestContext, state: AppState, project: ProjectPublic, config: dict[str, object]
) -> None:
    """A ``kb_ingest`` job submitted through the generic jobs API: its KB must belong to ``project``
    (a KB id of another project answers 404, as if it did not exist), then ``authorize_ingest``."""
    kb_id = config.get("kb_id")
    if not isinstance(kb_id, str):
        raise InvalidRequest(
            "invalid kb_ingest config: kb_id: a knowledge base id is required", param="config"
        )
    try:
        kb: KbPublic | None = await anyio.to_thread.run_sync(lambda: knowledge(state).get_by_id(kb_id))
    except NotFound:
        kb = None
    if kb is None or kb.project_id != project.id:
        raise NotFound(
            f"Project {project.path} has no knowledge base with id {kb_id!r}.",
            param="config",
            code="kb_not_found",
        )
    await authorize_ingest(context, state, kb)


async def _queue(
    context: RequestContext,
    state: AppState,
    kb: KbPublic,
    *,
    server_paths: list[str],
    urls: list[str],
    tags: list[str],
) -> IngestProgress:
    await authorize_ingest(context, state, kb)

    def submit() -> IngestProgress:
        job = ingest_job.submit(
            state.jobs, kb, server_paths=server_paths, urls=urls, tags=tags, actor=context.principal.key_id
        )
        return ingest_job.progress_of(job, kb)

    return await anyio.to_thread.run_sync(submit)


@router.post("/kb/{kb}/ingest", response_model=IngestProgress, status_code=status.HTTP_202_ACCEPTED)
async def ingest(
    kb: str, spec: IngestRequest, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> IngestProgress:
    """Queue a ``kb_ingest`` job for server files/folders and/or http(s) URLs; poll ``GET …/ingest``
    (or the job: ``job_id``). 409 while another ingest of the KB is queued or running."""
    found = await resolve_kb(context, state, kb, project, "write")
    paths = _check_server_paths(context, state, spec.paths)
    urls = [check_url(url) for url in spec.urls]
    return await _queue(
        context, state, found, server_paths=[str(p) for p in paths], urls=urls, tags=spec.tags
    )


_UPLOAD_PIECE = 1024 * 1024


def _upload_name(raw: str | None, seen: set[str]) -> str:
    name = PurePosixPath((raw or "").replace("\\", "/")).name.strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise InvalidRequest(f"an uploaded file needs a plain file name, not {raw!r}", param="files")
    if not supported(Path(name)):
        raise InvalidRequest(
            f"{name}: unsupported file type (supported: {', '.join(sorted(SUFFIXES))})", param="files"
        )
    if name in seen:
        raise InvalidRequest(f"{name} is uploaded twice", param="files")
    seen.add(name)
    return name


@router.post("/kb/{kb}/files", response_model=IngestProgress, status_code=status.HTTP_202_ACCEPTED)
async def upload_files(
    kb: str,
    context: ContextDep,
    state: StateDep,
    files: list[UploadFile] = File(
        description="One or more documents (PDF, DOCX, HTML, MD, TXT, CSV, XLSX)."
    ),
    tags: list[str] = Form(default=[]),
    project: str | None = ProjectParam,
) -> IngestProgress:
    """Upload documents (multipart, field ``files``) and queue their ingest as a job. Each file
    may hold ``STRATUM_KB_UPLOAD_MAX_BYTES`` (413 above); files are kept under the artifacts
    store (``$STRATUM_HOME/artifacts/kb-uploads/<kb id>/<upload id>/``); a file's name is its
    source, so uploading a changed file with the same name replaces its chunks."""
    found = await resolve_kb(context, state, kb, project, "write")
    # A 409 before storing the files; a submission racing this one is refused at queueing (the
    # store's exclusive key) and its files removed below.
    await anyio.to_thread.run_sync(lambda: ingest_job.check_idle(state.jobs, found))
    limit = state.settings.kb_upload_max_bytes
    seen: set[str] = set()
    names = [_upload_name(upload.filename, seen) for upload in files]
    folder = uploads.uploads_dir(state.settings.artifacts_dir, found) / uuid.uuid4().hex
    await anyio.to_thread.run_sync(lambda: folder.mkdir(parents=True, exist_ok=True))
    try:
        for upload, name in zip(files, names, strict=True):
            size = 0
            with (folder / name).open("wb") as target:
                while piece := await upload.read(_UPLOAD_PIECE):
                    size += len(piece)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"{name} is over the {limit}-byte upload limit (STRATUM_KB_UPLOAD_MAX_BYTES)",
                            param="files",
                        )
                    await anyio.to_thread.run_sync(target.write, piece)
        return await _queue(context, state, found, server_paths=[str(folder)], urls=[], tags=tags)
    except BaseException:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        raise


@router.get("/kb/{kb}/ingest", response_model=IngestProgress)
async def ingest_progress(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> IngestProgress:
    """Progress of the KB's latest ingest job (files, chunks, pages, ETA; ``idle`` if none)."""
    found = await resolve_kb(context, state, kb, project, "read")
    latest = await anyio.to_thread.run_sync(lambda: ingest_job.kb_jobs(state.jobs, found, limit=1))
    if latest:
        return ingest_job.progress_of(latest[0], found)
    return knowledge(state).progress.get(found.id) or IngestProgress(kb=found.name)


@router.delete("/kb/{kb}/ingest", response_model=IngestProgress)
async def cancel_ingest(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> IngestProgress:
    """Cancel the KB's queued or running ingest job; committed chunks stay (ingest again to resume)."""
    found = await resolve_kb(context, state, kb, project, "write")

    def cancel() -> IngestProgress:
        for job in ingest_job.active_jobs(state.jobs, found):
            return ingest_job.progress_of(state.jobs.cancel(job.id), found)
        raise Conflict(f"knowledge base {found.name} has no ingest queued or running", param="kb")

    return await anyio.to_thread.run_sync(cancel)


@router.post("/kb/{kb}/search", response_model=SearchResult)
async def search(
    kb: str, spec: SearchRequest, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> SearchResult:
    """Ranked chunks (source, page, heading path, chunk id, text, score) for a query."""
    found = await resolve_kb(context, state, kb, project, "read")
    encoder = None if (spec.mode or found.settings.retrieval) == "bm25" else await kb_encoder(state, found)
    return await anyio.to_thread.run_sync(lambda: knowledge(state).search(found, spec, encoder=encoder))


@router.get("/kb/{kb}/export", response_class=FileResponse)
async def export(
    kb: str, context: ContextDep, state: StateDep, project: str | None = ProjectParam
) -> FileResponse:
    """The KB as one archive (chunks, vectors, settings); ``stratum kb import`` reads it."""
    found = await resolve_kb(context, state, kb, project, "read")
    folder = Path(tempfile.mkdtemp(prefix="stratum-kb-"))
    target = folder / f"{found.name}.zip"
    await anyio.to_thread.run_sync(lambda: export_kb(state.db, found, target))
    cleanup = BackgroundTask(shutil.rmtree, folder, ignore_errors=True)
    return FileResponse(target, media_type="application/zip", filename=target.name, background=cleanup)
