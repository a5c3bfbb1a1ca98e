"""Typed dependencies: the app state and the request context every route receives.

``RequestContext`` is the seam for governance: today it carries the verified key; organisations,
projects, quotas and audit attach here as further dependencies without touching the routes.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request

from stratum.errors import AuthenticationError, PermissionDenied
from stratum.gateway.state import AppState
from stratum.governance.service import Principal


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.stratum
    return state


StateDep = Annotated[AppState, Depends(get_state)]


@dataclass
class RequestContext:
    request_id: str
    principal: Principal
    started: float = field(default_factory=time.perf_counter)


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
    context = RequestContext(request_id=request_id, principal=principal)
    request.state.context = context
    return context


ContextDep = Annotated[RequestContext, Depends(get_context)]


async def require_admin(context: ContextDep) -> RequestContext:
    if context.principal.role != "admin":
        raise PermissionDenied("this endpoint needs an admin key", code="admin_required")
    return context


AdminDep = Annotated[RequestContext, Depends(require_admin)]
