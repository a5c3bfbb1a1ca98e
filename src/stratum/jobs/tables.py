"""The job queue's one table (migration 0011).

A job is a row; its state machine is ``queued → running → succeeded | failed | cancelled`` with
``running → queued`` when an attempt fails and attempts remain, or when the worker holding it went
silent past its lease. ``attempts`` counts the attempts started; the worker holding an attempt is
``worker_id`` and every write it makes is fenced on ``(worker_id, attempts)``.

Exclusive keys (migration 0016): a partial unique index lets at most one queued or running job hold
an ``exclusive_key`` (e.g. ``kb_ingest:<kb id>``: one ingest per knowledge base). The store enforces
it, so two racing submissions cannot both pass. Moves between ``queued`` and ``running`` stay inside
the index's states and never conflict; only a job (re)entering them (submit, retry) can.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow

# The states in which a job holds its exclusive key (``schemas`` spells them for the service).
ACTIVE_CLAUSE = "status IN ('queued', 'running')"
# A kind's key (``kb_ingest:<32-char id>``) or a project-scoped key from the jobs API.
EXCLUSIVE_KEY_LENGTH = 255


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_priority", "status", "priority", "created_at"),
        Index(
            "ix_jobs_exclusive_key_active",
            "exclusive_key",
            unique=True,
            sqlite_where=text(ACTIVE_CLAUSE),
            postgresql_where=text(ACTIVE_CLAUSE),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Jobs belong to a project; NULL for platform jobs submitted from the CLI without one.
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Resource request; the pool is "gpu" when gpus > 0, else "cpu".
    cpu_threads: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=1024)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(96))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # At most one queued or running job per key (the partial unique index above); NULL: no key.
    exclusive_key: Mapped[str | None] = mapped_column(String(EXCLUSIVE_KEY_LENGTH))
    created_by: Mapped[str] = mapped_column(String(64), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
