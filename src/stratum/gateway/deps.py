"""Typed dependencies: the app state, the request context, and authorisation by policy.

``RequestContext`` is the seam for governance: it carries the verified principal, and every policy
decision goes through ``context.authorize`` (one evaluator, ``governance.policy``). Inference routes
declare ``dependencies=[Permit("chat")]``: that checks the key's scopes, tenancy, rules and role
for the route and the model named in the body before the route runs, so routes hold no permission
logic. ``MeterDep`` (``gateway.metering``) reserves and settles quota around a generation.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request

from stratum.errors import AuthenticationError, NotFound, PolicyDenied, StratumError
from stratum.gateway.state import AppState
from stratum.governance.policy import Check
from stratum.governance.schemas import ProjectPublic
from stratum.governance.service import Principal


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.stratum
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def base_model_name(ref: str) -> str:
    """``NAME`` of ``NAME``, ``NAME@VERSION`` or ``NAME:ALIAS``: policies and scopes match names."""
    return ref.split("@", 1)[0].split(":", 1)[0]


@dataclass
class RequestContext:
    request_id: str
    principal: Principal
    state: AppState | None = None
    ip: str | None = None
    started: float = field(default_factory=time.perf_counter)
    # The registry version chosen for this request (errors carry it in x-stratum-model-version too).
    model_version: str | None = None
    # A chat request's messages and first answer after the guard's masking, kept with the response
    # record for feedback datasets (gateway/serving.py; STRATUM_FEEDBACK_PROMPTS).
    prompt: list[dict[str, Any]] | None = None
    answer: str | None = None

    async def authorize(
        self,
        action: str,
        *,
        model: str | None = None,
        org_id: str | None = None,
        project_id: str | None = None,
    ) -> None:
        """Raise ``PolicyDenied`` (403, naming the rule) unless the policy allows ``action``."""
        assert self.state is not None
        check = await self._check(action, model=model, org_id=org_id, project_id=project_id)
        await anyio.to_thread.run_sync(self.state.policies.authorize, self.principal, check)

    async def may(self, action: str, *, model: str | None = None) -> bool:
        assert self.state is not None
        check = await self._check(action, model=model)
        decision = await anyio.to_thread.run_sync(self.state.policies.decide, self.principal, check)
        return decision.allowed

    async def _check(self, action: str, *, model: str | None = None, **tenant: Any) -> Check:
        assert self.state is not None
        tags: frozenset[str] = frozenset()
        if model is not None:
            model = base_model_name(model)
            if await anyio.to_thread.run_sync(self.state.policies.uses_tags):
                tags = await anyio.to_thread.run_sync(_model_tags, self.state, model)
        return Check(action=action, model=model, model_tags=tags, ip=self.ip, **tenant)

    async def project(self, org: str, project: str, action: str) -> ProjectPublic:
        """The project ``org/project`` once the policy allowed ``action`` on it (a tenant key gets
        the same 403 for a missing project as for another tenant's)."""
        assert self.state is not None
        try:
            found = await anyio.to_thread.run_sync(self.state.tenancy.get_project, f"{org}/{project}")
        except NotFound as error:
            raise self.denied_unless_admin(error) from None
        await self.authorize(action, org_id=found.org_id, project_id=found.id)
        return found

    def denied_unless_admin(self, error: NotFound) -> StratumError:
        """What a tenant key gets for a name that does not exist: the same 403 as for another
        tenant's name, so names of other tenants cannot be probed."""
        if self.principal.is_admin:
            return error
        return PolicyDenied("the resource belongs to another organisation", rule="tenancy.org")


def _model_tags(state: AppState, name: str) -> frozenset[str]:
    try:
        model = state.registry.get_model(name)
    except NotFound:
        return frozenset()
    latest = model.versions[-1] if model.versions else None
    tags = (latest.metadata.get("tags") if latest else None) or []
    return frozenset(str(tag) for tag in tags)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    return token.strip()


async def get_context(request: Request, state: StateDep) -> RequestContext:
    token = _bearer(request)
    digest = hashlib.sha256(token.encode()).digest()
    principal = state.principals.get(digest)
    if principal is None:
        principal = await anyio.to_thread.run_sync(state.keys.verify, token)
        state.principals.put(digest, principal)
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    context = RequestContext(
        request_id=request_id,
        principal=principal,
        state=state,
        ip=request.client.host if request.client else None,
    )
    request.state.context = context
    return context


ContextDep = Annotated[RequestContext, Depends(get_context)]


async def _requested_model(request: Request) -> str | None:
    if "model_id" in request.path_params:
        return str(request.path_params["model_id"])
    if request.method != "POST":
        return None
    try:
        # Starlette caches the parsed body: the route's own body parsing reuses it.
        body = await request.json()
    except ValueError:
        return None  # the route's validation answers 400
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def Permit(action: str) -> Any:
    """A route dependency: the policy must allow ``action`` (on the requested model, if any)."""

    async def permit(request: Request, context: ContextDep) -> None:
        await context.authorize(action, model=await _requested_model(request))

    return Depends(permit)
