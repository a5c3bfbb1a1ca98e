"""Authorisation in one place: role grants (RBAC) plus attribute rules, every denial naming its rule.

``evaluate(principal, check, rules)`` decides in this order; the first denial wins:

1. Key scopes, data carried by the key itself: ``key.ip_allow`` (client address), ``key.endpoints``
   (chat, completions, embeddings, models), ``key.models`` (model-name globs).
2. Tenancy: a tenant key only reaches its own org (``tenancy.org``); developer and viewer keys only
   their own project (``tenancy.project``).
3. Editable ``deny`` rules (stored in the database, edited through ``/admin/v1/policies``), e.g.
   "project acme/bot may only use models tagged internal" is
   ``{"effect": "deny", "projects": ["acme/bot"], "actions": ["chat", "completions"],
   "except_tags": ["internal"]}``.
4. Allow: the role's grants (``ROLE_GRANTS``, rule ``rbac.<role>``) or an editable ``allow`` rule.
   Nothing allows → denied by ``rbac.<role>``.

Why not pycasbin: it is not installed here, and the part of it we would use (role → action globs,
deny-override) is these few lines; a rule here names itself in every denial without an adapter.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratum.governance.schemas import Principal

# Actions. Inference: chat, completions, embeddings; reading the model list: models.read.
# Administration: <resource>.read / <resource>.write.
INFERENCE = ("chat", "completions", "embeddings")
ACTIONS = (
    *INFERENCE,
    "models.read",
    "orgs.read",
    "orgs.write",
    "projects.read",
    "projects.write",
    "keys.read",
    "keys.write",
    "usage.read",
    "policies.read",
    "policies.write",
    "audit.read",
    "prices.read",
    "prices.write",
    "jobs.read",
    "jobs.write",
    "guard.read",
    "guard.write",
    "guard.scan",
    "guard.defaults.read",
    "guard.defaults.write",
    # Datasets (stratum.data), owned by a project.
    "datasets.read",
    "datasets.write",
    # routing: routes and fallback chains, responder rules, the hand-off queue, the response cache
    "routes.read",
    "routes.write",
    "rules.read",
    "rules.write",
    "queue.read",
    "queue.write",
    "cache.write",
    # Knowledge bases (stratum.knowledge): reading covers search and answering from a KB.
    "kb.read",
    "kb.write",
    # LLM + database QA (stratum.knowledge.sql): connections per project.
    "databases.read",
    "databases.write",
)
_USE = (*INFERENCE, "models.read")

# RBAC as data: what each role may do (globs over ACTIONS), checked after scopes and tenancy.
ROLE_GRANTS: dict[str, tuple[str, ...]] = {
    "admin": ("*",),
    "user": _USE,
    "org_admin": (
        *_USE,
        "orgs.read",
        "projects.*",
        "keys.*",
        "usage.read",
        "audit.read",
        "prices.read",
        "jobs.*",
        "guard.read",
        "guard.write",
        "guard.scan",
        "datasets.*",
        "kb.*",
        "databases.*",
    ),
    "developer": (
        *_USE,
        "projects.read",
        "usage.read",
        "guard.read",
        "guard.scan",
        "datasets.*",
        "kb.*",
        "jobs.*",
        "databases.read",
    ),
    "viewer": (
        "models.read",
        "projects.read",
        "usage.read",
        "guard.read",
        "datasets.read",
        "kb.read",
        "jobs.read",
        "databases.read",
    ),
}


class PolicyRule(BaseModel):
    """An editable attribute rule. Empty lists match anything; model conditions need a model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    effect: Literal["allow", "deny"] = "deny"
    description: str | None = Field(default=None, max_length=512)
    actions: list[str] = Field(default_factory=lambda: ["*"])
    roles: list[str] = Field(default_factory=list)
    orgs: list[str] = Field(default_factory=list)
    projects: list[str] = Field(default_factory=list, description="ORG/PROJECT paths.")
    models: list[str] = Field(default_factory=list, description="Model-name globs the rule covers.")
    except_models: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, description="Applies to models with any of these tags.")
    except_tags: list[str] = Field(default_factory=list, description="Never to models with any of these.")

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        if value.split(".")[0] in ("key", "tenancy", "rbac"):
            raise ValueError("names starting with key., tenancy. or rbac. are built-in rules")
        return value

    def spec(self) -> dict[str, list[str]]:
        return self.model_dump(exclude={"name", "effect", "description"})

    def matches(self, principal: Principal, check: Check) -> bool:
        if not any(fnmatchcase(check.action, pattern) for pattern in self.actions):
            return False
        if self.roles and principal.role not in self.roles:
            return False
        if self.orgs and (principal.org is None or principal.org.name not in self.orgs):
            return False
        if self.projects and (principal.project is None or principal.project.name not in self.projects):
            return False
        if self.models or self.except_models or self.tags or self.except_tags:
            if check.model is None:
                return False
            if self.models and not _glob_any(check.model, self.models):
                return False
            if _glob_any(check.model, self.except_models):
                return False
            if self.tags and not check.model_tags.intersection(self.tags):
                return False
            if check.model_tags.intersection(self.except_tags):
                return False
        return True


@dataclass(frozen=True)
class Check:
    """What a request wants to do, with the attributes rules look at."""

    action: str
    model: str | None = None
    model_tags: frozenset[str] = frozenset()
    ip: str | None = None
    # The tenant that owns the resource acted on (admin API), if any.
    org_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str


def evaluate(principal: Principal, check: Check, rules: list[PolicyRule]) -> Decision:
    """Decide ``check`` for ``principal``; see the module docstring for the order."""
    for denial in (_scopes(principal, check), _tenancy(principal, check)):
        if denial is not None:
            return denial
    for rule in rules:
        if rule.effect == "deny" and rule.matches(principal, check):
            return Decision(False, rule.name, rule.description or f"{check.action} is denied by policy")
    if any(fnmatchcase(check.action, grant) for grant in ROLE_GRANTS.get(principal.role, ())):
        return Decision(True, f"rbac.{principal.role}", "granted to the role")
    for rule in rules:
        if rule.effect == "allow" and rule.matches(principal, check):
            return Decision(True, rule.name, "allowed by policy")
    return Decision(False, f"rbac.{principal.role}", f"the {principal.role} role may not {check.action}")


def _scopes(principal: Principal, check: Check) -> Decision | None:
    if principal.ip_allow and not _address_allowed(check.ip, principal.ip_allow):
        return Decision(False, "key.ip_allow", f"this key may not be used from {check.ip or 'unknown'}")
    family = "models" if check.action == "models.read" else check.action
    if principal.endpoints and family in (*INFERENCE, "models") and family not in principal.endpoints:
        allowed = ", ".join(principal.endpoints)
        return Decision(False, "key.endpoints", f"this key may only call: {allowed}")
    if check.model is not None and principal.models and not _glob_any(check.model, principal.models):
        allowed = ", ".join(principal.models)
        return Decision(False, "key.models", f"this key may only use models matching {allowed}")
    return None


def _tenancy(principal: Principal, check: Check) -> Decision | None:
    if principal.role in ("admin",):
        return None
    if check.org_id is not None and (principal.org is None or principal.org.id != check.org_id):
        return Decision(False, "tenancy.org", "the resource belongs to another organisation")
    if (
        check.project_id is not None
        and principal.role in ("developer", "viewer")
        and (principal.project is None or principal.project.id != check.project_id)
    ):
        return Decision(False, "tenancy.project", "the resource belongs to another project")
    return None


def _glob_any(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _address_allowed(ip: str | None, allowed: tuple[str, ...]) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in allowed)


def check_networks(entries: list[str]) -> list[str]:
    """Validate an IP allow-list (addresses or CIDR networks); raises ValueError naming the bad one."""
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {entry!r}") from exc
    return entries
