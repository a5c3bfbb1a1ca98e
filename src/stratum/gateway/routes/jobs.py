"""``/admin/v1/…/jobs``: the job queue of a project (submit, list, show, logs, cancel, retry).

Jobs belong to a project; every route but the cross-project list is under the project's path and
authorised with the tenant that owns it, like the rest of the admin API. A job id of another
project answers 404 from this project's path. Only a platform admin may point a job at files on
the server (``*_path`` and ``*_paths`` settings); tenants name registered models and datasets.
An ``exclusive_key`` given here is the project's own (stored as ``project:<project id>:<key>``), so
a key can neither hold up nor reveal another project's jobs; kinds with their own key (kb_ingest)
ignore it.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query, status

from stratum.errors import NotFound, PermissionDenied
from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.gateway.routes.kb import authorize_ingest_job
from stratum.gateway.state import AppState
from stratum.jobs.schemas import JobLogs, JobPublic, JobSubmit
from stratum.knowledge import ingest_job

router = APIRouter(prefix="/admin/v1", tags=["jobs"])
_BASE = "/orgs/{org}/projects/{project}/jobs"


async def _job(
    context: RequestContext, state: AppState, org: str, project: str, job_id: str, action: str
) -> JobPublic:
    found = await context.project(org, project, action)
    try:
        job = await anyio.to_thread.run_sync(state.jobs.get, job_id)
    except NotFound:
        job = None
    if job is None or job.project != found.path:
        raise NotFound(f"Project {found.path} has no job {job_id!r}.", param="job_id", code="job_not_found")
    return job


def _server_paths(config: dict[str, Any]) -> list[str]:
    return sorted(key for key in config if key.endswith(("_path", "_paths")))


@router.get("/jobs", response_model=list[JobPublic])
async def list_all_jobs(
    context: ContextDep,
    state: StateDep,
    status_: str | None = Query(default=None, alias="status"),
    kind: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[JobPublic]:
    """Jobs the caller may see, newest first: all (platform admin), its org's, or its project's."""
    await context.authorize("jobs.read")
    principal = context.principal
    scope: dict[str, str | None] = {}
    if principal.role in ("developer", "viewer"):
        scope["project_id"] = principal.project.id if principal.project else "-"
    elif not principal.is_admin:
        scope["org_id"] = principal.org.id if principal.org else "-"
    return await anyio.to_thread.run_sync(
        lambda: state.jobs.list_jobs(status=status_, kind=kind, limit=limit, **scope)
    )


@router.get(_BASE, response_model=list[JobPublic])
async def list_jobs(
    org: str,
    project: str,
    context: ContextDep,
    state: StateDep,
    status_: str | None = Query(default=None, alias="status"),
    kind: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[JobPublic]:
    found = await context.project(org, project, "jobs.read")
    return await anyio.to_thread.run_sync(
        lambda: state.jobs.list_jobs(project_id=found.id, status=status_, kind=kind, limit=limit)
    )


@router.post(_BASE, response_model=JobPublic, status_code=status.HTTP_201_CREATED)
async def submit_job(
    org: str, project: str, spec: JobSubmit, context: ContextDep, state: StateDep
) -> JobPublic:
    """Queue a job in the project; ``config`` is checked by the job kind (400 naming the field)."""
    found = await context.project(org, project, "jobs.write")
    paths = _server_paths(spec.config)
    if paths and not context.principal.is_admin:
        raise PermissionDenied(
            f"only a platform admin may point a job at server files ({', '.join(paths)})", param="config"
        )
    if spec.kind == ingest_job.KIND:
        # The KB's own roles and project, the same check as ``POST /admin/v1/kb/{kb}/ingest``.
        await authorize_ingest_job(context, state, found, spec.config)
    if spec.exclusive_key is not None:
        spec = spec.model_copy(update={"exclusive_key": f"project:{found.id}:{spec.exclusive_key}"})
    base = spec.config.get("base")
    if isinstance(base, str):
        # A key limited to some models (key.models, rules) may only fine-tune those.
        await context.authorize("models.read", model=base, org_id=found.org_id, project_id=found.id)
    return await anyio.to_thread.run_sync(
        lambda: state.jobs.submit(spec, project=found.path, actor=context.principal.key_id)
    )


@router.get(_BASE + "/{job_id}", response_model=JobPublic)
async def get_job(org: str, project: str, job_id: str, context: ContextDep, state: StateDep) -> JobPublic:
    """Status, resources, progress (step, total, loss, ETA), metrics, result."""
    return await _job(context, state, org, project, job_id, "jobs.read")


@router.get(_BASE + "/{job_id}/logs", response_model=JobLogs)
async def job_logs(
    org: str,
    project: str,
    job_id: str,
    context: ContextDep,
    state: StateDep,
    offset: int = Query(default=0, ge=0, description="Byte offset to read from (the last reply's offset)."),
    tail: int | None = Query(default=None, ge=0, le=100_000, description="Only the last N lines."),
) -> JobLogs:
    job = await _job(context, state, org, project, job_id, "jobs.read")
    return await anyio.to_thread.run_sync(lambda: state.jobs.logs(job.id, offset=offset, tail=tail))


@router.post(_BASE + "/{job_id}/cancel", response_model=JobPublic)
async def cancel_job(org: str, project: str, job_id: str, context: ContextDep, state: StateDep) -> JobPublic:
    job = await _job(context, state, org, project, job_id, "jobs.write")
    return await anyio.to_thread.run_sync(state.jobs.cancel, job.id)


@router.post(_BASE + "/{job_id}/retry", response_model=JobPublic)
async def retry_job(org: str, project: str, job_id: str, context: ContextDep, state: StateDep) -> JobPublic:
    job = await _job(context, state, org, project, job_id, "jobs.write")
    if job.kind == ingest_job.KIND:
        # A retry runs the ingest again: the caller needs the KB's write roles too.
        found = await context.project(org, project, "jobs.write")
        await authorize_ingest_job(context, state, found, job.config)
    return await anyio.to_thread.run_sync(state.jobs.retry, job.id)
