"""Organisations and their projects, with the limits each level carries.

Projects are addressed as ``ORG/PROJECT`` everywhere (CLI, admin API paths, policy rules).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from stratum.errors import Conflict, InvalidRequest, NotFound
from stratum.governance import audit, repo
from stratum.governance.schemas import LimitsUpdate, OrgCreate, OrgPublic, ProjectCreate, ProjectPublic
from stratum.governance.tables import OrgRow, ProjectRow
from stratum.storage import Database, advisory_lock, utcnow


def org_public(row: OrgRow) -> OrgPublic:
    return OrgPublic(id=row.id, name=row.name, created_at=row.created_at, **_limits(row))


def project_public(row: ProjectRow, org: OrgRow) -> ProjectPublic:
    return ProjectPublic(
        id=row.id,
        org_id=org.id,
        org=org.name,
        name=row.name,
        path=f"{org.name}/{row.name}",
        cost_budget=row.cost_budget,
        created_at=row.created_at,
        **_limits(row),
    )


def _limits(row: OrgRow | ProjectRow) -> dict[str, int | None]:
    return {"rpm": row.rpm, "tpm": row.tpm, "token_budget": row.token_budget}


def split_path(path: str) -> tuple[str, str]:
    org, slash, project = path.strip().partition("/")
    if not slash or not org or not project or "/" in project:
        raise InvalidRequest(f"expected ORG/PROJECT, got {path!r}", param="project")
    return org, project


def find_org(session: Session, name: str) -> OrgRow:
    row = repo.org_by_name(session, name)
    if row is None:
        raise NotFound(f"No organisation named {name!r}.", param="org", code="org_not_found")
    return row


def find_project(session: Session, path: str) -> tuple[OrgRow, ProjectRow]:
    org_name, name = split_path(path)
    org = find_org(session, org_name)
    row = repo.project_by_name(session, org_id=org.id, name=name)
    if row is None:
        raise NotFound(f"No project {path!r}.", param="project", code="project_not_found")
    return org, row


class TenancyService:
    """Serves: the admin API and CLI (orgs and projects: create, list, show, set limits)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    def create_org(self, spec: OrgCreate, *, actor: str = audit.LOCAL_ACTOR) -> OrgPublic:
        with self._db.session() as session:
            advisory_lock(session, "governance.names")
            if repo.org_by_name(session, spec.name) is not None:
                raise Conflict(f"An organisation named {spec.name!r} already exists.", param="name")
            row = OrgRow(
                id="org_" + secrets.token_hex(6),
                name=spec.name,
                created_at=self._clock(),
                rpm=spec.rpm,
                tpm=spec.tpm,
                token_budget=spec.token_budget,
            )
            repo.add(session, row)
            audit.append(
                session,
                actor=actor,
                action="org.create",
                target=row.name,
                org_id=row.id,
                detail=spec.model_dump(),
            )
            return org_public(row)

    def list_orgs(self, *, org_id: str | None = None) -> list[OrgPublic]:
        with self._db.session(write=False) as session:
            return [org_public(row) for row in repo.list_orgs(session, org_id=org_id)]

    def get_org(self, name: str) -> OrgPublic:
        with self._db.session(write=False) as session:
            return org_public(find_org(session, name))

    def create_project(
        self, org_name: str, spec: ProjectCreate, *, actor: str = audit.LOCAL_ACTOR
    ) -> ProjectPublic:
        with self._db.session() as session:
            advisory_lock(session, "governance.names")
            org = find_org(session, org_name)
            if repo.project_by_name(session, org_id=org.id, name=spec.name) is not None:
                raise Conflict(f"Project {org.name}/{spec.name} already exists.", param="name")
            row = ProjectRow(
                id="prj_" + secrets.token_hex(6),
                org_id=org.id,
                name=spec.name,
                cost_budget=spec.cost_budget,
                created_at=self._clock(),
                rpm=spec.rpm,
                tpm=spec.tpm,
                token_budget=spec.token_budget,
            )
            repo.add(session, row)
            audit.append(
                session,
                actor=actor,
                action="project.create",
                target=f"{org.name}/{row.name}",
                org_id=org.id,
                project_id=row.id,
                detail=spec.model_dump(),
            )
            return project_public(row, org)

    def list_projects(self, org_name: str, *, project_id: str | None = None) -> list[ProjectPublic]:
        with self._db.session(write=False) as session:
            org = find_org(session, org_name)
            rows = repo.list_projects(session, org_id=org.id)
            return [project_public(row, org) for row in rows if project_id in (None, row.id)]

    def get_project(self, path: str) -> ProjectPublic:
        with self._db.session(write=False) as session:
            org, project = find_project(session, path)
            return project_public(project, org)

    def set_project_limits(
        self, path: str, update: LimitsUpdate, *, actor: str = audit.LOCAL_ACTOR
    ) -> ProjectPublic:
        """Set the limits sent (fields left out keep their value); in force from the next request."""
        changes = update.model_dump(exclude_unset=True)
        if not changes:
            raise InvalidRequest("nothing to change: send rpm, tpm, token_budget or cost_budget")
        with self._db.session() as session:
            org, row = find_project(session, path)
            for name, value in changes.items():
                setattr(row, name, value)
            audit.append(
                session,
                actor=actor,
                action="project.update",
                target=f"{org.name}/{row.name}",
                org_id=org.id,
                project_id=row.id,
                detail=changes,
            )
            return project_public(row, org)
