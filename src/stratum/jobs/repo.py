"""Queries over ``jobs`` shared by the service and the scheduler; rows become ``JobPublic`` here."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from stratum.errors import NotFound
from stratum.governance.tables import OrgRow, ProjectRow
from stratum.jobs.schemas import ACTIVE, JobPublic, Resources
from stratum.jobs.tables import JobRow


def _with_project() -> Select[tuple[JobRow, str | None, str | None]]:
    return (
        select(JobRow, OrgRow.name, ProjectRow.name)
        .outerjoin(ProjectRow, ProjectRow.id == JobRow.project_id)
        .outerjoin(OrgRow, OrgRow.id == ProjectRow.org_id)
    )


def public(row: JobRow, org: str | None, project: str | None) -> JobPublic:
    resources = Resources(cpu_threads=row.cpu_threads, memory_mb=row.memory_mb, gpus=row.gpus)
    return JobPublic(
        id=row.id,
        kind=row.kind,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]
        project=f"{org}/{project}" if org and project else None,
        priority=row.priority,
        config=row.config,
        resources=resources,
        pool=resources.pool,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        cancel_requested=row.cancel_requested,
        worker_id=row.worker_id,
        progress=row.progress,
        metrics=row.metrics,
        result=row.result,
        error=row.error,
        exclusive_key=row.exclusive_key,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        lease_expires_at=row.lease_expires_at,
    )


def get_public(session: Session, job_id: str) -> JobPublic:
    found = session.execute(_with_project().where(JobRow.id == job_id)).first()
    if found is None:
        raise NotFound(f"No job {job_id!r}.", param="job_id", code="job_not_found")
    return public(*found)


def list_public(
    session: Session,
    *,
    project_id: str | None = None,
    org_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    config: Mapping[str, str] | None = None,
    limit: int = 100,
) -> list[JobPublic]:
    """``config``: only jobs whose config has these string values (e.g. ``{"kb_id": ...}``)."""
    query = _with_project()
    if project_id is not None:
        query = query.where(JobRow.project_id == project_id)
    if org_id is not None:
        query = query.where(ProjectRow.org_id == org_id)
    if status is not None:
        query = query.where(JobRow.status == status)
    if kind is not None:
        query = query.where(JobRow.kind == kind)
    for key, value in (config or {}).items():
        query = query.where(JobRow.config[key].as_string() == value)
    query = query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
    return [public(*found) for found in session.execute(query).all()]


def holder(session: Session, key: str) -> JobPublic | None:
    """The queued or running job holding ``key``, if any."""
    found = session.execute(
        _with_project().where(JobRow.exclusive_key == key, JobRow.status.in_(ACTIVE))
    ).first()
    return None if found is None else public(*found)


def locked(session: Session, job_id: str) -> JobRow:
    """The row, locked for this transaction (PostgreSQL; SQLite writers hold the database lock)."""
    row = session.execute(select(JobRow).where(JobRow.id == job_id).with_for_update()).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No job {job_id!r}.", param="job_id", code="job_not_found")
    return row
