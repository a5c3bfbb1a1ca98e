"""Registry queries. Every function takes the caller's session: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stratum.registry.tables import ModelAliasEventRow, ModelAliasRow, ModelRow, ModelVersionRow
from stratum.storage import utcnow


def get_model(session: Session, name: str) -> ModelRow | None:
    return session.scalars(select(ModelRow).where(ModelRow.name == name)).one_or_none()


def get_model_by_id(session: Session, model_id: int) -> ModelRow | None:
    return session.get(ModelRow, model_id)


def list_models(session: Session) -> Sequence[ModelRow]:
    return session.scalars(select(ModelRow).order_by(ModelRow.name)).all()


def model_names(session: Session, *, limit: int) -> Sequence[str]:
    return session.scalars(select(ModelRow.name).order_by(ModelRow.name).limit(limit)).all()


def create_model(session: Session, *, name: str, kind: str, description: str | None) -> ModelRow:
    row = ModelRow(name=name, kind=kind, description=description, last_version=0)
    session.add(row)
    session.flush()
    return row


def add_version(session: Session, *, model: ModelRow, created_by: str, **fields: Any) -> ModelVersionRow:
    """Append the model's next version. Callers hold ``advisory_lock`` on the model name."""
    model.last_version += 1
    row = ModelVersionRow(model_id=model.id, version=model.last_version, created_by=created_by, **fields)
    session.add(row)
    session.flush()
    return row


def versions_of(session: Session, model_ids: Collection[int]) -> Sequence[ModelVersionRow]:
    query = select(ModelVersionRow).where(ModelVersionRow.model_id.in_(model_ids))
    return session.scalars(query.order_by(ModelVersionRow.model_id, ModelVersionRow.version)).all()


def aliases_of(session: Session, model_ids: Collection[int]) -> Sequence[ModelAliasRow]:
    query = select(ModelAliasRow).where(ModelAliasRow.model_id.in_(model_ids))
    return session.scalars(query.order_by(ModelAliasRow.alias)).all()


def get_version(session: Session, *, model_id: int, version: int) -> ModelVersionRow | None:
    query = select(ModelVersionRow).where(
        ModelVersionRow.model_id == model_id, ModelVersionRow.version == version
    )
    return session.scalars(query).one_or_none()


def get_version_by_id(session: Session, version_id: int) -> ModelVersionRow | None:
    return session.get(ModelVersionRow, version_id)


def latest_version(session: Session, model_id: int, *, at: datetime | None = None) -> ModelVersionRow | None:
    """The highest existing version (created at or before ``at`` when given)."""
    query = select(ModelVersionRow).where(ModelVersionRow.model_id == model_id)
    if at is not None:
        query = query.where(ModelVersionRow.created_at <= at)
    return session.scalars(query.order_by(ModelVersionRow.version.desc()).limit(1)).first()


def get_alias(session: Session, *, model_id: int, alias: str) -> ModelAliasRow | None:
    query = select(ModelAliasRow).where(ModelAliasRow.model_id == model_id, ModelAliasRow.alias == alias)
    return session.scalars(query).one_or_none()


def move_alias(
    session: Session, *, model: ModelRow, alias: str, target: ModelVersionRow | None, actor: str
) -> bool:
    """Point ``alias`` at ``target`` (None removes it) and record the move. False if nothing changed."""
    current = get_alias(session, model_id=model.id, alias=alias)
    if (current.version_id if current else None) == (target.id if target else None):
        return False
    now = utcnow()
    previous = get_version_by_id(session, current.version_id) if current else None
    if target is None:
        assert current is not None  # guaranteed by the no-change check above
        session.delete(current)
    elif current is None:
        session.add(
            ModelAliasRow(
                model_id=model.id, alias=alias, version_id=target.id, updated_by=actor, updated_at=now
            )
        )
    else:
        current.version_id, current.updated_by, current.updated_at = target.id, actor, now
    session.add(
        ModelAliasEventRow(
            model_id=model.id,
            alias=alias,
            from_version_id=previous.id if previous else None,
            from_version=previous.version if previous else None,
            to_version_id=target.id if target else None,
            to_version=target.version if target else None,
            actor=actor,
            at=now,
        )
    )
    session.flush()
    return True


def alias_events(session: Session, *, model_id: int, alias: str) -> Sequence[ModelAliasEventRow]:
    query = select(ModelAliasEventRow).where(
        ModelAliasEventRow.model_id == model_id, ModelAliasEventRow.alias == alias
    )
    return session.scalars(query.order_by(ModelAliasEventRow.at, ModelAliasEventRow.id)).all()


def alias_event_at(session: Session, *, model_id: int, alias: str, at: datetime) -> ModelAliasEventRow | None:
    """The last move of ``alias`` at or before ``at``: it tells what the alias served then."""
    query = select(ModelAliasEventRow).where(
        ModelAliasEventRow.model_id == model_id,
        ModelAliasEventRow.alias == alias,
        ModelAliasEventRow.at <= at,
    )
    order = (ModelAliasEventRow.at.desc(), ModelAliasEventRow.id.desc())
    return session.scalars(query.order_by(*order).limit(1)).first()


def dependants(session: Session, version_ids: Collection[int], *, outside_model: int | None = None) -> int:
    """How many versions (optionally of other models) are built on one of ``version_ids``."""
    query = select(func.count()).where(ModelVersionRow.base_version_id.in_(version_ids))
    if outside_model is not None:
        query = query.where(ModelVersionRow.model_id != outside_model)
    return session.scalar(query.select_from(ModelVersionRow)) or 0


def delete_version(session: Session, row: ModelVersionRow) -> None:
    session.delete(row)
    session.flush()


def delete_model(session: Session, model: ModelRow) -> None:
    """Delete the model with its history, aliases and versions (in foreign-key order)."""
    for table in (ModelAliasEventRow, ModelAliasRow, ModelVersionRow):
        session.execute(delete(table).where(table.model_id == model.id))
    session.delete(model)
    session.flush()
