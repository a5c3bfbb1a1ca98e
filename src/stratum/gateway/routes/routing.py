"""``/admin/v1`` routes, responder rules, the hand-off queue, backends and cache; ``/v1/tickets``.

Routes, rules, the queue and the cache are platform-wide configuration (like prices): the policy
grants them to the platform admin (or to whom an ``allow`` rule names). A ticket is read back by the
project (or key) whose request was handed off, with ``GET /v1/tickets/{id}``; any other tenant gets
404, as if it did not exist.
"""

from __future__ import annotations

from typing import Literal

import anyio
from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from stratum.errors import InvalidRequest, NotFound
from stratum.gateway.deps import ContextDep, StateDep
from stratum.gateway.dispatch import routing_of
from stratum.routing.schemas import ResponderRule, Route, Ticket, TicketAnswer

router = APIRouter(prefix="/admin/v1", tags=["routing"])
client_router = APIRouter(tags=["routing"])


class BackendStatus(BaseModel):
    backend: str
    circuit: str
    consecutive_failures: int


class CacheDropped(BaseModel):
    dropped: int


@router.get("/routes", response_model=list[Route])
async def list_routes(context: ContextDep, state: StateDep) -> list[Route]:
    """Every stored route: backends by priority and weight, burst threshold, fallback chain."""
    await context.authorize("routes.read")
    return await anyio.to_thread.run_sync(routing_of(state).routes.list_routes)


@router.get("/routes/{model:path}", response_model=Route)
async def get_route(model: str, context: ContextDep, state: StateDep) -> Route:
    await context.authorize("routes.read")
    return await anyio.to_thread.run_sync(routing_of(state).routes.get_route, model)


@router.put("/routes/{model:path}", response_model=Route)
async def put_route(model: str, route: Route, context: ContextDep, state: StateDep) -> Route:
    """Create or replace a model's route; the gateway uses it within a second."""
    await context.authorize("routes.write")
    if route.model != model:
        raise InvalidRequest(f"the route in the body is for {route.model!r}, not {model!r}", param="model")
    routing = routing_of(state)
    saved = await anyio.to_thread.run_sync(
        lambda: routing.routes.set_route(route, actor=context.principal.key_id)
    )
    routing.router.invalidate()
    return saved


@router.delete("/routes/{model:path}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_route(model: str, context: ContextDep, state: StateDep) -> Response:
    await context.authorize("routes.write")
    routing = routing_of(state)
    await anyio.to_thread.run_sync(lambda: routing.routes.remove_route(model, actor=context.principal.key_id))
    routing.router.invalidate()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/backends", response_model=list[BackendStatus])
async def list_backends(context: ContextDep, state: StateDep) -> list[BackendStatus]:
    """Circuit state of every backend this gateway has sent traffic to."""
    await context.authorize("routes.read")
    return [
        BackendStatus(backend=ref, circuit=breaker.state, consecutive_failures=breaker.failures)
        for ref, breaker in sorted(routing_of(state).router.breakers().items())
    ]


@router.get("/rules", response_model=list[ResponderRule])
async def list_rules(context: ContextDep, state: StateDep) -> list[ResponderRule]:
    await context.authorize("rules.read")
    return await anyio.to_thread.run_sync(routing_of(state).rules.list_rules)


@router.put("/rules/{name}", response_model=ResponderRule)
async def put_rule(name: str, rule: ResponderRule, context: ContextDep, state: StateDep) -> ResponderRule:
    """Create or replace a responder rule (keywords → templated answer)."""
    await context.authorize("rules.write")
    if rule.name != name:
        raise InvalidRequest(f"the rule in the body is named {rule.name!r}, not {name!r}", param="name")
    return await anyio.to_thread.run_sync(
        lambda: routing_of(state).rules.set_rule(rule, actor=context.principal.key_id)
    )


@router.delete("/rules/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(name: str, context: ContextDep, state: StateDep) -> Response:
    await context.authorize("rules.write")
    await anyio.to_thread.run_sync(
        lambda: routing_of(state).rules.remove_rule(name, actor=context.principal.key_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/queue", response_model=list[Ticket])
async def list_queue(
    context: ContextDep,
    state: StateDep,
    ticket_status: Literal["open", "answered"] | None = Query(default="open", alias="status"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[Ticket]:
    """Requests handed to a person (open ones by default, oldest first)."""
    await context.authorize("queue.read")
    return await anyio.to_thread.run_sync(
        lambda: routing_of(state).tickets.list(status=ticket_status, limit=limit)
    )


@router.get("/queue/{ticket_id}", response_model=Ticket)
async def get_queued(ticket_id: str, context: ContextDep, state: StateDep) -> Ticket:
    await context.authorize("queue.read")
    return await anyio.to_thread.run_sync(routing_of(state).tickets.get, ticket_id)


@router.post("/queue/{ticket_id}/answer", response_model=Ticket)
async def answer_ticket(ticket_id: str, body: TicketAnswer, context: ContextDep, state: StateDep) -> Ticket:
    """Answer a handed-off request; the client fetches it with ``GET /v1/tickets/{id}``."""
    await context.authorize("queue.write")
    return await anyio.to_thread.run_sync(
        lambda: routing_of(state).tickets.answer(ticket_id, body.answer, actor=context.principal.key_id)
    )


@router.delete("/cache", response_model=CacheDropped)
async def drop_cache(
    context: ContextDep,
    state: StateDep,
    model: str | None = Query(default=None, description="Only this served model name."),
) -> CacheDropped:
    """Invalidate cached responses (all, or one model's)."""
    await context.authorize("cache.write")
    cache = routing_of(state).cache
    if cache is None:
        return CacheDropped(dropped=0)
    return CacheDropped(dropped=await anyio.to_thread.run_sync(lambda: cache.invalidate(model)))


@client_router.get("/v1/tickets/{ticket_id}", response_model=Ticket)
async def get_ticket(ticket_id: str, context: ContextDep, state: StateDep) -> Ticket:
    """A hand-off ticket of the caller's project (or key): its status and, once given, the answer."""
    principal = context.principal
    tickets = routing_of(state).tickets
    if principal.is_admin:
        return await anyio.to_thread.run_sync(tickets.get, ticket_id)
    project_id = principal.project.id if principal.project else None
    try:
        return await anyio.to_thread.run_sync(
            lambda: tickets.get(ticket_id, project_id=project_id, key_id=principal.key_id)
        )
    except NotFound:
        raise NotFound(f"No ticket {ticket_id!r}.", param="ticket_id") from None
