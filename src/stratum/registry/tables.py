"""Registry tables (migrations 0001 and 0007). ORM rows stay inside the registry: see ``schemas``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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


class LineageEdgeRow(Base):
    """One "source produced/feeds target" edge of the lineage graph (created by migration 0007).

    Nodes are (kind, id) pairs; they are not foreign keys because most kinds (datasets, jobs,
    evaluations) live in other domains and an edge must outlive, say, a removed evaluation run.
    """

    __tablename__ = "lineage_edges"
    __table_args__ = (
        UniqueConstraint(
            "source_kind", "source_id", "target_kind", "target_id", "relation", name="uq_lineage_edges_edge"
        ),
        Index(None, "target_kind", "target_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(200))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServedResponseRow(Base):
    """Which version served one response, for whom, and how it went (migration 0007).

    Written in batches by the gateway (``registry.responses.ResponseLog``). Feedback resolves its
    ``response_id`` here; deployment controllers read status and latency per version from here, which
    is how several gateways agree on a canary's health.
    """

    __tablename__ = "served_responses"
    __table_args__ = (
        Index(None, "response_id", unique=True),
        Index(None, "deployment", "at"),
        Index(None, "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL when the request failed before a response existed (its outcome still counts).
    response_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(160))
    version_ref: Mapped[str] = mapped_column(String(160))
    deployment: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(64))
    org_id: Mapped[str | None] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The chat request's messages and the first answer, after the guard's masking (migration 0015);
    # NULL when prompts are not kept (STRATUM_FEEDBACK_PROMPTS=false) or for other endpoints.
    prompt: Mapped[list[Any] | None] = mapped_column()
    answer: Mapped[str | None] = mapped_column(Text)


class FeedbackRow(Base):
    """A user's judgement of one response, attributed to the version that served it (migration 0007)."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index(None, "version_ref", "created_at"),
        Index(None, "response_id"),
        Index(None, "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(160))
    version_ref: Mapped[str] = mapped_column(String(160))
    deployment: Mapped[str | None] = mapped_column(String(128))
    # 0..1; thumbs up is 1.0 and thumbs down 0.0.
    score: Mapped[float] = mapped_column(Float)
    thumbs: Mapped[str | None] = mapped_column(String(4))
    correction: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(64))
    org_id: Mapped[str | None] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Copied from the response record (migration 0015): what was asked and answered, guard-masked.
    prompt: Mapped[list[Any] | None] = mapped_column()
    answer: Mapped[str | None] = mapped_column(Text)
