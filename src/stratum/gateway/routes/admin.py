"""``/admin/v1``: organisations, projects, keys, usage and policy rules.

Who may do what is decided by the policy (``context.authorize``) with the tenant that owns the
resource, so an org admin reaches only their org and a developer or viewer only their project.
Lists are filtered to the caller's tenancy the same way. A name that does not exist answers a
tenant key with the same 403 as another tenant's name (nothing to probe).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import anyio
from fastapi import APIRouter, Query, Response, status

from stratum.errors import InvalidRequest, NotFound
from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.gateway.state import AppState
from stratum.governance.policy import PolicyRule
from stratum.governance.prices import Price
from stratum.governance.schemas import (
    ApiKeyCreated,
    ApiKeyPublic,
    AuditEntry,
    KeyCreate,
    Limits,
    LimitsUpdate,
    OrgCreate,
    OrgPublic,
    ProjectCreate,
    ProjectPublic,
    UsageReport,
)

router = APIRouter(prefix="/admin/v1", tags=["admin"])


async def _org(context: RequestContext, state: AppState, org: str, action: str) -> OrgPublic:
    try:
        found = await anyio.to_thread.run_sync(state.tenancy.get_org, org)
    except NotFound as error:
        raise context.denied_unless_admin(error) from None
    await context.authorize(action, org_id=found.id)
    return found


@router.get("/orgs", response_model=list[OrgPublic])
async def list_orgs(context: ContextDep, state: StateDep) -> list[OrgPublic]:
    """Organisations: all for a platform admin, one's own for an org admin."""
    await context.authorize("orgs.read")
    principal = context.principal
    scope = None if principal.is_admin else (principal.org.id if principal.org else "-")
    return await anyio.to_thread.run_sync(lambda: state.tenancy.list_orgs(org_id=scope))


@router.post("/orgs", response_model=OrgPublic, status_code=status.HTTP_201_CREATED)
async def create_org(spec: OrgCreate, context: ContextDep, state: StateDep) -> OrgPublic:
    await context.authorize("orgs.write")
    return await anyio.to_thread.run_sync(
        lambda: state.tenancy.create_org(spec, actor=context.principal.key_id)
    )


@router.get("/orgs/{org}", response_model=OrgPublic)
async def get_org(org: str, context: ContextDep, state: StateDep) -> OrgPublic:
    return await _org(context, state, org, "orgs.read")


@router.get("/orgs/{org}/projects", response_model=list[ProjectPublic])
async def list_projects(org: str, context: ContextDep, state: StateDep) -> list[ProjectPublic]:
    """An org's projects (a developer or viewer key sees only its own project)."""
    await _org(context, state, org, "projects.read")
    principal = context.principal
    own = principal.project.id if principal.role in ("developer", "viewer") and principal.project else None
    return await anyio.to_thread.run_sync(lambda: state.tenancy.list_projects(org, project_id=own))


@router.post("/orgs/{org}/projects", response_model=ProjectPublic, status_code=status.HTTP_201_CREATED)
async def create_project(
    org: str, spec: ProjectCreate, context: ContextDep, state: StateDep
) -> ProjectPublic:
    await _org(context, state, org, "projects.write")
    return await anyio.to_thread.run_sync(
        lambda: state.tenancy.create_project(org, spec, actor=context.principal.key_id)
    )


@router.get("/orgs/{org}/projects/{project}", response_model=ProjectPublic)
async def get_project(org: str, project: str, context: ContextDep, state: StateDep) -> ProjectPublic:
    return await context.project(org, project, "projects.read")


@router.patch("/orgs/{org}/projects/{project}", response_model=ProjectPublic)
async def update_project(
    org: str, project: str, update: LimitsUpdate, context: ContextDep, state: StateDep
) -> ProjectPublic:
    """Change a project's limits; the gateway applies them from the next request."""
    found = await context.project(org, project, "projects.write")
    return await anyio.to_thread.run_sync(
        lambda: state.tenancy.set_project_limits(found.path, update, actor=context.principal.key_id)
    )


@router.get("/orgs/{org}/projects/{project}/keys", response_model=list[ApiKeyPublic])
async def list_keys(org: str, project: str, context: ContextDep, state: StateDep) -> list[ApiKeyPublic]:
    found = await context.project(org, project, "keys.read")
    return await anyio.to_thread.run_sync(lambda: state.keys.list_keys(project_id=found.id))


@router.post(
    "/orgs/{org}/projects/{project}/keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED
)
async def create_key(
    org: str, project: str, spec: KeyCreate, context: ContextDep, state: StateDep
) -> ApiKeyCreated:
    """Issue a key of the project; the plaintext is in this response only."""
    found = await context.project(org, project, "keys.write")
    limits = Limits(rpm=spec.rpm, tpm=spec.tpm, token_budget=spec.token_budget)
    plaintext, key = await anyio.to_thread.run_sync(
        lambda: state.keys.create_key(
            name=spec.name or f"{found.path} key",
            role=spec.role,
            expires_at=spec.expires_at,
            project=found.path,
            models=spec.models,
            endpoints=spec.endpoints,
            ip_allow=spec.ip_allow,
            limits=limits,
            actor=context.principal.key_id,
        )
    )
    return ApiKeyCreated(key=plaintext, **key.model_dump())


@router.delete("/orgs/{org}/projects/{project}/keys/{key_id}", response_model=ApiKeyPublic)
async def revoke_key(
    org: str, project: str, key_id: str, context: ContextDep, state: StateDep
) -> ApiKeyPublic:
    """Revoke a key of the project; requests with it fail from the next one on."""
    found = await context.project(org, project, "keys.write")
    try:
        key = await anyio.to_thread.run_sync(state.keys.get_key, key_id)
    except NotFound:
        key = None
    if key is None or key.project != found.path:
        raise NotFound(f"Project {found.path} has no key {key_id!r}.", param="key_id")
    return await anyio.to_thread.run_sync(lambda: state.keys.revoke(key_id, actor=context.principal.key_id))


@router.get("/orgs/{org}/projects/{project}/usage", response_model=UsageReport)
async def usage(
    org: str,
    project: str,
    context: ContextDep,
    state: StateDep,
    by: Literal["model", "key", "day"] = "model",
    since: date | None = Query(default=None, description="First UTC day included (YYYY-MM-DD)."),
) -> UsageReport:
    """Requests and tokens of the project, grouped by model, key or UTC day."""
    found = await context.project(org, project, "usage.read")
    # Records of requests that just finished may still be queued in the batched writer.
    await anyio.to_thread.run_sync(state.audit_writer.flush)
    return await anyio.to_thread.run_sync(lambda: state.usage.report(found.path, by=by, since=since))


@router.get("/policies", response_model=list[PolicyRule])
async def list_policies(context: ContextDep, state: StateDep) -> list[PolicyRule]:
    """The editable rules (role grants and key scopes are built in: see governance.policy)."""
    await context.authorize("policies.read")
    return await anyio.to_thread.run_sync(state.policies.list_rules)


@router.put("/policies/{name}", response_model=PolicyRule)
async def put_policy(name: str, rule: PolicyRule, context: ContextDep, state: StateDep) -> PolicyRule:
    """Create or replace a rule; the gateway evaluates it within a second."""
    await context.authorize("policies.write")
    if rule.name != name:
        raise InvalidRequest(f"the rule in the body is named {rule.name!r}, not {name!r}", param="name")
    return await anyio.to_thread.run_sync(
        lambda: state.policies.put_rule(rule, actor=context.principal.key_id)
    )


@router.delete("/policies/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(name: str, context: ContextDep, state: StateDep) -> Response:
    await context.authorize("policies.write")
    await anyio.to_thread.run_sync(lambda: state.policies.delete_rule(name, actor=context.principal.key_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=list[AuditEntry])
async def audit_log(
    context: ContextDep,
    state: StateDep,
    since: datetime | None = Query(default=None, description="Entries at or after this instant (ISO 8601)."),
    actor: str | None = Query(default=None, description="Only entries by this actor (a key id or cli:USER)."),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[AuditEntry]:
    """The audit log, newest first: everything for a platform admin, one's own org for an org admin."""
    principal = context.principal
    org_id = None if principal.is_admin else (principal.org.id if principal.org else "-")
    await context.authorize("audit.read", org_id=org_id)
    if since is not None and since.tzinfo is None:
        raise InvalidRequest("since needs a time zone (e.g. 2026-01-01T00:00:00Z)", param="since")
    await anyio.to_thread.run_sync(state.audit_writer.flush)
    return await anyio.to_thread.run_sync(
        lambda: state.audit.list_entries(since=since, actor=actor, org_id=org_id, limit=limit)
    )


@router.get("/prices", response_model=list[Price])
async def list_prices(context: ContextDep, state: StateDep) -> list[Price]:
    """The price table: per model, per 1,000 input and output tokens."""
    await context.authorize("prices.read")
    return await anyio.to_thread.run_sync(state.prices.list_prices)


@router.put("/prices/{model:path}", response_model=Price)
async def put_price(model: str, price: Price, context: ContextDep, state: StateDep) -> Price:
    """Create or replace a model's price; requests recorded from then on are costed with it."""
    await context.authorize("prices.write")
    if price.model != model:
        raise InvalidRequest(f"the price in the body is for {price.model!r}, not {model!r}", param="model")
    return await anyio.to_thread.run_sync(
        lambda: state.prices.set_price(price, actor=context.principal.key_id)
    )
