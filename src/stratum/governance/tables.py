"""Governance tables: API keys (migration 0001); organisations, projects, policy rules, quota
counters and usage records (migration 0002); audit log and prices (migration 0003).

Limits (``rpm``, ``tpm``, ``token_budget``) sit on every level a request is checked against — org,
project, key — and ``NULL`` means "no limit at this level".
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class LimitsMixin:
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    token_budget: Mapped[int | None] = mapped_column(BigInteger)


class OrgRow(LimitsMixin, Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectRow(LimitsMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # Money budget per month, in the currency of the price table.
    cost_budget: Mapped[Decimal | None] = mapped_column(Numeric(18, 6))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyRow(LimitsMixin, Base):
    """An API key: only a salted hash of the secret is stored; ``prefix`` finds the row.

    Platform keys have no org and no project; org-admin keys have an org; all others a project.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    # Not unique: an operator-configured key may share its first characters with another key.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # Scopes; empty lists mean "no restriction".
    models: Mapped[list[Any]] = mapped_column(default=list)
    endpoints: Mapped[list[Any]] = mapped_column(default=list)
    ip_allow: Mapped[list[Any]] = mapped_column(default=list)


class PolicyRuleRow(Base):
    """An editable attribute rule (see ``governance.policy``)."""

    __tablename__ = "policy_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    effect: Mapped[str] = mapped_column(String(8))
    # The match conditions: actions, roles, org, project, models, except_models, tags, except_tags.
    spec: Mapped[dict[str, Any]]
    description: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CounterRow(Base):
    """A quota counter: requests or tokens of one scope in one window (see ``governance.counters``)."""

    __tablename__ = "quota_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class UsageRow(Base):
    """One inference request's billed usage, with its cost centre (org / project / key / model)."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_project_id_at", "project_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str | None] = mapped_column(String(32), index=True)
    project_id: Mapped[str | None] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(160))
    endpoint: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer, default=200)
    # Decimal money at the prices in force when recorded; NULL when the model has no price.
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 6))


class PriceRow(Base):
    """A model's price per 1,000 input (prompt) and output (completion) tokens (migration 0003)."""

    __tablename__ = "model_prices"

    model: Mapped[str] = mapped_column(String(160), primary_key=True)
    input_per_1k: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    output_per_1k: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRow(Base):
    """One audit-log entry (migration 0003): an admin action or an inference request's metadata.

    Rows form a hash chain: ``hash`` is sha256 over the entry's canonical JSON, which includes
    ``prev_hash`` (the previous entry's ``hash``), so editing, inserting or deleting a row breaks the
    chain at that row. Never bodies, never keys: ``detail`` holds only ids, names, counts and status.
    """

    __tablename__ = "audit_log"

    # Assigned by the writer (previous id + 1) under the append lock: a gap is itself evidence.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[str | None] = mapped_column(String(32), index=True)
    project_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# --- content guard and audit retention (migration 0004) ---


class GuardPolicyRow(Base):
    """A project's content-guard policy (``governance.guard.policy``); ``scope`` is a project id,
    or ``default`` for keys without a project. No row: the built-in default policy."""

    __tablename__ = "guard_policies"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    policy: Mapped[dict[str, Any]]
    # The sensitive words, kept apart from the policy so listing a policy stays small.
    words: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditCheckpointRow(Base):
    """Written when old audit entries are pruned: the last pruned entry's id and hash, from which
    ``verify`` continues. The prune is itself an audit entry naming both, so an edited checkpoint
    does not verify."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    through_id: Mapped[int] = mapped_column(BigInteger)
    through_hash: Mapped[str] = mapped_column(String(64))
    pruned: Mapped[int] = mapped_column(BigInteger)
