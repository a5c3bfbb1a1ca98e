"""Registry tables (created by migration 0001). ORM rows stay inside the registry: see ``schemas``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class ModelRow(Base):
    """A served name. Versions are numbered per model and never reused (``last_version``)."""

    __tablename__ = "models"
    # Ids are never reused (SQLite would otherwise recycle the highest deleted id).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    default_alias: Mapped[str] = mapped_column(String(64), default="latest", server_default="latest")
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersionRow(Base):
    """One immutable artifact (local weights, an upstream endpoint, a builtin encoder) of a model."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index(None, "base_version_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(16), default="full", server_default="full")
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    artifact_uri: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    upstream_url: Mapped[str | None] = mapped_column(Text)
    upstream_model: Mapped[str | None] = mapped_column(String(255))
    api_key_env: Mapped[str | None] = mapped_column(String(128))
    # The column is called "metadata", which DeclarativeBase reserves as an attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default="{}")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasRow(Base):
    """A movable name (``prod``, ``staging``) for one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasEventRow(Base):
    """Append-only history of alias moves; ``to_version`` NULL means the alias was removed."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index(None, "model_id", "alias", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
