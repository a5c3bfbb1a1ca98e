"""Deployment tables (migration 0007): the current routing of a public name, and its history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class DeploymentRow(Base):
    """A public model name routed to one or two registry versions (``NAME@V`` refs) by weight."""

    __tablename__ = "deployments"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # canary | ab
    status: Mapped[str] = mapped_column(String(16))  # canary | promoted | rolled_back | ab | stopped
    stable_ref: Mapped[str] = mapped_column(String(160))
    candidate_ref: Mapped[str | None] = mapped_column(String(160))
    # Ref → percent of traffic; the percents add up to 100.
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    steps: Mapped[list[Any]] = mapped_column(default=list)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    interval_s: Mapped[float] = mapped_column(Float, default=600.0)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    step_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentEventRow(Base):
    """Append-only history: creations, steps, promotions, rollbacks, with the numbers behind them."""

    __tablename__ = "deployment_events"
    __table_args__ = (Index(None, "deployment", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)
