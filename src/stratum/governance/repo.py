"""API key queries. Every function takes the caller's session: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from stratum.governance.tables import ApiKeyRow


def add_key(session: Session, row: ApiKeyRow) -> ApiKeyRow:
    session.add(row)
    session.flush()
    return row


def get_key(session: Session, key_id: str) -> ApiKeyRow | None:
    return session.get(ApiKeyRow, key_id)


def keys_with_prefix(session: Session, prefix: str) -> Sequence[ApiKeyRow]:
    return session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).all()


def list_keys(session: Session) -> Sequence[ApiKeyRow]:
    return session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)).all()


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
