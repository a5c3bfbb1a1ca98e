"""``/admin/v1/orgs/{org}/projects/{project}/databases``: database connections for text-to-SQL.

Registering and removing needs ``databases.write`` (org admins), listing and asking
``databases.read`` (developers and viewers of the project too). Tenancy is decided by the policy
with the project that owns the connection, as for every admin route (``RequestContext.project``).
``POST .../ask`` answers one question through the connection's model, or runs given SQL through
the same guard; a rejected query is a 400 with code ``sql_rejected`` naming the reason.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Response, status

from stratum.errors import InvalidRequest
from stratum.gateway.deps import ContextDep, StateDep
from stratum.knowledge.sql.schemas import AskRequest, DatabaseCreate, DatabasePublic, SQLAnswer

router = APIRouter(prefix="/admin/v1", tags=["admin"])
_BASE = "/orgs/{org}/projects/{project}/databases"


@router.get(_BASE, response_model=list[DatabasePublic])
async def list_databases(
    org: str, project: str, context: ContextDep, state: StateDep
) -> list[DatabasePublic]:
    found = await context.project(org, project, "databases.read")
    return await anyio.to_thread.run_sync(
        lambda: state.databases.list_databases(project_id=found.id, project_path=found.path)
    )


@router.post(_BASE, response_model=DatabasePublic, status_code=status.HTTP_201_CREATED)
async def add_database(
    org: str, project: str, spec: DatabaseCreate, context: ContextDep, state: StateDep
) -> DatabasePublic:
    """Register a connection; the URL is stored encrypted and never shown again with its password."""
    found = await context.project(org, project, "databases.write")
    return await anyio.to_thread.run_sync(
        lambda: state.databases.add(
            project_id=found.id, project_path=found.path, spec=spec, actor=context.principal.key_id
        )
    )


@router.get(_BASE + "/{name}", response_model=DatabasePublic)
async def get_database(
    org: str, project: str, name: str, context: ContextDep, state: StateDep
) -> DatabasePublic:
    found = await context.project(org, project, "databases.read")
    return await anyio.to_thread.run_sync(
        lambda: state.databases.get(project_id=found.id, project_path=found.path, name=name)
    )


@router.delete(_BASE + "/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_database(
    org: str, project: str, name: str, context: ContextDep, state: StateDep
) -> Response:
    found = await context.project(org, project, "databases.write")
    await anyio.to_thread.run_sync(
        lambda: state.databases.remove(
            project_id=found.id, project_path=found.path, name=name, actor=context.principal.key_id
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(_BASE + "/{name}/query", response_model=SQLAnswer)
async def query_database(
    org: str, project: str, name: str, ask: AskRequest, context: ContextDep, state: StateDep
) -> SQLAnswer:
    """Run the given SQL through the guard (allow-list, the caller's row filters, limit, timeout)."""
    found = await context.project(org, project, "databases.read")
    if not ask.sql:
        raise InvalidRequest("give the SQL to run; questions go to /v1/chat/completions (model db/NAME)")
    sql, role = ask.sql, context.principal.role

    def run() -> SQLAnswer:
        conn = state.databases.connection(project_id=found.id, project_path=found.path, name=name)
        return state.databases.run(conn, sql, role=role)

    return await anyio.to_thread.run_sync(run)
