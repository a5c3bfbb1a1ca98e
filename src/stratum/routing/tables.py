"""Routing tables (migration 0006): routes, responder rules and human hand-off tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class RouteRow(Base):
    """How one served model name is answered: backends by priority/weight, then a fallback chain."""

    __tablename__ = "routes"

    model: Mapped[str] = mapped_column(String(160), primary_key=True)
    # [{"model": REF, "priority": int, "weight": float}]
    backends: Mapped[list[Any]] = mapped_column(default=list)
    # [{"kind": "model" | "rules" | "human", "target": REF | None}]
    fallback: Mapped[list[Any]] = mapped_column(default=list)
    triggers: Mapped[list[Any]] = mapped_column(default=list)
    burst_queue: Mapped[int | None] = mapped_column(Integer)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResponderRuleRow(Base):
    """A templated answer given when a request's text matches the rule's keywords."""

    __tablename__ = "responder_rules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    intent: Mapped[str | None] = mapped_column(String(64))
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    match: Mapped[str] = mapped_column(String(8), default="any")
    template: Mapped[str] = mapped_column(Text)
    models: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketRow(Base):
    """A request handed to a person: stored with its tenant, answered later by an operator."""

    __tablename__ = "handoff_tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(160))
    org_id: Mapped[str | None] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(32), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    messages: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column()
