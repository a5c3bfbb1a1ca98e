"""Governance queries. Every function takes the caller's session: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from stratum.governance.tables import ApiKeyRow, OrgRow, PolicyRuleRow, ProjectRow


def add(session: Session, row: object) -> None:
    session.add(row)
    session.flush()


def add_key(session: Session, row: ApiKeyRow) -> ApiKeyRow:
    add(session, row)
    return row


def get_key(session: Session, key_id: str) -> ApiKeyRow | None:
    return session.get(ApiKeyRow, key_id)


def keys_with_prefix(session: Session, prefix: str) -> Sequence[ApiKeyRow]:
    return session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).all()


def list_keys(
    session: Session, *, org_id: str | None = None, project_id: str | None = None
) -> Sequence[ApiKeyRow]:
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if org_id is not None:
        query = query.where(ApiKeyRow.org_id == org_id)
    if project_id is not None:
        query = query.where(ApiKeyRow.project_id == project_id)
    return session.scalars(query).all()


def active_admin_exists(session: Session, *, now: datetime) -> bool:
    query = select(ApiKeyRow.id).where(
        ApiKeyRow.role == "admin",
        ApiKeyRow.revoked_at.is_(None),
        or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
    )
    return session.scalars(query.limit(1)).first() is not None


def touch(session: Session, *, key_id: str, now: datetime, not_since: datetime) -> None:
    """Set ``last_used_at = now`` unless it is already later than ``not_since``.

    The condition lives in the UPDATE so that concurrent requests with the same key write once.
    """
    session.execute(
        update(ApiKeyRow)
        .where(
            ApiKeyRow.id == key_id,
            or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at <= not_since),
        )
        .values(last_used_at=now)
    )


def get_org(session: Session, org_id: str) -> OrgRow | None:
    return session.get(OrgRow, org_id)


def org_by_name(session: Session, name: str) -> OrgRow | None:
    return session.scalars(select(OrgRow).where(OrgRow.name == name)).first()


def list_orgs(session: Session, *, org_id: str | None = None) -> Sequence[OrgRow]:
    query = select(OrgRow).order_by(OrgRow.name)
    if org_id is not None:
        query = query.where(OrgRow.id == org_id)
    return session.scalars(query).all()


def get_project(session: Session, project_id: str) -> ProjectRow | None:
    return session.get(ProjectRow, project_id)


def project_by_name(session: Session, *, org_id: str, name: str) -> ProjectRow | None:
    query = select(ProjectRow).where(ProjectRow.org_id == org_id, ProjectRow.name == name)
    return session.scalars(query).first()


def list_projects(session: Session, *, org_id: str) -> Sequence[ProjectRow]:
    return session.scalars(
        select(ProjectRow).where(ProjectRow.org_id == org_id).order_by(ProjectRow.name)
    ).all()


def list_rules(session: Session) -> Sequence[PolicyRuleRow]:
    return session.scalars(select(PolicyRuleRow).order_by(PolicyRuleRow.created_at, PolicyRuleRow.name)).all()


def rule_by_name(session: Session, name: str) -> PolicyRuleRow | None:
    return session.scalars(select(PolicyRuleRow).where(PolicyRuleRow.name == name)).first()
