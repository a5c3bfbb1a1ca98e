"""Public governance types: principals, tenants, keys, rules and usage as shown (never hashes or rows)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# admin: the platform operator; user: a platform-wide inference key (the foundation's keys);
# org_admin: manages one organisation; developer: uses one project; viewer: reads one project.
Role = Literal["admin", "user", "org_admin", "developer", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "user", "org_admin", "developer", "viewer")
PLATFORM_ROLES: tuple[Role, ...] = ("admin", "user")
TENANT_ROLES: tuple[Role, ...] = ("org_admin", "developer", "viewer")
KeyStatus = Literal["active", "revoked", "expired"]
# What a key's endpoint scope can name.
ENDPOINTS = ("chat", "completions", "embeddings", "models")
# Org and project names appear in ``ORG/PROJECT`` paths and URLs: no slash, colon, @ or whitespace.
NAME_PATTERN = re.compile(r"^[^\s/@:]{1,64}$")


@dataclass(frozen=True)
class Limits:
    """Limits of one level (org, project or key); None means no limit there."""

    rpm: int | None = None
    tpm: int | None = None
    token_budget: int | None = None
    # Money per calendar month (projects only, for now): enforced like token_budget, in cost units.
    cost_budget: Decimal | None = None


@dataclass(frozen=True)
class Tenant:
    """An org or project as a principal sees it: id, display name (``org`` or ``org/project``), limits."""

    id: str
    name: str
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, once its API key is verified, with the key's scopes and tenancy."""

    key_id: str
    name: str
    role: Role
    org: Tenant | None = None
    project: Tenant | None = None
    models: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    ip_allow: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LimitsFields(BaseModel):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (prompt + completion) per minute.")
    token_budget: int | None = Field(default=None, ge=1, description="Tokens per calendar month (UTC).")


class OrgCreate(LimitsFields):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked_name(value)


class ProjectCreate(OrgCreate):
    cost_budget: Decimal | None = Field(default=None, gt=0, description="Money per calendar month.")


class LimitsUpdate(LimitsFields):
    cost_budget: Decimal | None = Field(default=None, gt=0)


class OrgPublic(LimitsFields):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: datetime


class ProjectPublic(LimitsFields):
    model_config = ConfigDict(frozen=True)

    id: str
    org_id: str
    org: str
    name: str
    path: str  # "org/project"
    cost_budget: Decimal | None = None
    created_at: datetime


class KeyCreate(LimitsFields):
    name: str | None = None
    role: Role = "developer"
    models: list[str] = Field(default_factory=list, description="Model name globs, e.g. qwen*.")
    endpoints: list[str] = Field(default_factory=list, description=f"Subset of {', '.join(ENDPOINTS)}.")
    ip_allow: list[str] = Field(default_factory=list, description="Client addresses or CIDR networks.")
    expires_at: datetime | None = None


class ApiKeyPublic(BaseModel):
    """An API key as listed: ``prefix`` identifies it to humans; the secret is never shown again."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    prefix: str
    role: Role
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    org: str | None = None
    project: str | None = None
    models: list[str] = Field(default_factory=list)
    endpoints: list[str] = Field(default_factory=list)
    ip_allow: list[str] = Field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    token_budget: int | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str  # the plaintext, in this response only


class UsageLine(BaseModel):
    """One group of a usage report (a model, a key or a day)."""

    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # Sum of the recorded costs (requests of models without a price count as 0).
    cost: Decimal = Decimal(0)


class UsageReport(BaseModel):
    project: str
    by: Literal["model", "key", "day"]
    since: date | None = None
    lines: list[UsageLine]
    total: UsageLine


def _checked_name(value: str) -> str:
    value = value.strip()
    if not NAME_PATTERN.match(value):
        raise ValueError("names need 1-64 characters without spaces, '/', ':' or '@'")
    return value


def plain(value: Any) -> Any:
    """JSON-safe lists for JSON columns (tuples and generators become lists)."""
    return list(value or [])


class AuditEntry(BaseModel):
    """One audit-log entry as shown by ``stratum audit list`` and ``GET /admin/v1/audit``."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    org_id: str | None = None
    project_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    hash: str


class AuditVerification(BaseModel):
    """The result of walking the hash chain: ``ok`` with ``count`` entries, or the first broken one."""

    ok: bool
    count: int
    broken_id: int | None = None
    reason: str | None = None
    # Set when older entries were pruned: verification started after this entry id.
    checkpoint_id: int | None = None


class AuditPrune(BaseModel):
    """The result of pruning: how many entries went, through which id (None: nothing to prune)."""

    pruned: int
    through_id: int | None
    before: datetime
