"""Dataset tables (migration 0010): datasets, their immutable versions, and review-queue items.

A dataset belongs to a project (``project_id``) or, when created from the operator's terminal without
``--project``, to the platform (``NULL``). Versions are numbered per dataset and never change: the
rows live in a content-addressed Parquet file (``content_hash``), and ``transform`` records how the
version was made from ``parent_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    format: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    # sha256 of the normalised rows; also the Parquet file's name under artifacts/datasets/objects.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    rows: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    # {"name": "clean", "params": {...}}; imports record {"name": "import", "params": {"source": ...}}.
    transform: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Rows in/out, rows dropped and why, a few examples (see ``schemas.StepReport``).
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewItemRow(Base):
    """A row of a labelled version waiting for (or given) a human decision."""

    __tablename__ = "dataset_review_items"
    __table_args__ = (UniqueConstraint("version_id", "row_index"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True)
    row_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    # pending | accepted | edited | rejected
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # The edited row (same format as the dataset) when status is "edited"; a new label otherwise.
    edited: Mapped[dict[str, Any] | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None]
