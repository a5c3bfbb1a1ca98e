"""Evaluation tables (migration 0012): one row per run, one per item answered, one per gate decision.

Item rows keep the per-item scores so that any two runs of the same suite (same ``suite_digest``)
can be compared pairwise later, without re-running either model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class EvalRunRow(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (Index(None, "model_ref", "suite_digest"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The resolved version that answered (NAME@V), never an alias: aliases move.
    model_ref: Mapped[str] = mapped_column(String(200))
    suite: Mapped[str] = mapped_column(String(200))
    suite_kind: Mapped[str] = mapped_column(String(32))
    suite_digest: Mapped[str] = mapped_column(String(32))
    items: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column()
    seconds: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalItemRow(Base):
    __tablename__ = "eval_items"

    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    output: Mapped[str] = mapped_column(Text)
    scores: Mapped[dict[str, Any]] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class GateResultRow(Base):
    """What the release process reads before a canary of ``candidate_ref`` may start."""

    __tablename__ = "eval_gates"
    __table_args__ = (Index(None, "candidate_ref"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_ref: Mapped[str] = mapped_column(String(200))
    baseline_ref: Mapped[str] = mapped_column(String(200))
    candidate_run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    baseline_run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalScheduleRow(Base):
    """A production alias re-evaluated every ``every_s`` seconds (migration 0013).

    ``flagged`` is set when the newest run's metric dropped by more than ``max_drop`` (relative)
    against the schedule's previous run; it stays until a later run recovers or it is cleared.
    """

    __tablename__ = "eval_schedules"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))  # NAME:ALIAS, resolved at each run
    suite_path: Mapped[str | None] = mapped_column(Text)
    dataset_ref: Mapped[str | None] = mapped_column(String(200))
    split: Mapped[str | None] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    max_drop: Mapped[float] = mapped_column(Float)
    every_s: Mapped[int] = mapped_column(Integer)
    next_due_at: Mapped[datetime] = mapped_column()
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("eval_runs.id", ondelete="SET NULL"))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text)
    backflow_dataset: Mapped[str | None] = mapped_column(String(200))
    # Build a backflow dataset when a drop is flagged (migration 0015).
    backflow: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
