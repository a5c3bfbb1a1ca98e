"""``/admin/v1/.../guard``: a project's content-guard policy and sensitive words, and the scanner.

    GET   /admin/v1/orgs/{org}/projects/{project}/guard         policy + words (guard.read)
    PATCH /admin/v1/orgs/{org}/projects/{project}/guard         change the policy (guard.write)
    POST  /admin/v1/orgs/{org}/projects/{project}/guard/words   add/remove words (guard.write)
    GET   /admin/v1/guard/default, PATCH, POST …/words           the platform default (admin only)
    POST  /admin/v1/guard/scan                                   what the detectors find (guard.scan)

A project without its own policy uses the platform default, which starts as ``GuardPolicy()``.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.governance.guard.policy import (
    GuardPolicyUpdate,
    GuardSettings,
    ScanRequest,
    ScanResult,
    WordsChange,
)

router = APIRouter(prefix="/admin/v1", tags=["admin"])

_PROJECT = "/orgs/{org}/projects/{project}/guard"


async def _project(context: RequestContext, org: str, project: str, action: str) -> str:
    """The project path after the policy allowed ``action`` on it."""
    return (await context.project(org, project, action)).path


@router.get(_PROJECT, response_model=GuardSettings)
async def get_guard(org: str, project: str, context: ContextDep, state: StateDep) -> GuardSettings:
    """The project's guard policy and sensitive words (the platform default if it has none)."""
    path = await _project(context, org, project, "guard.read")
    return await anyio.to_thread.run_sync(state.guard.get, path)


@router.patch(_PROJECT, response_model=GuardSettings)
async def update_guard(
    org: str, project: str, update: GuardPolicyUpdate, context: ContextDep, state: StateDep
) -> GuardSettings:
    """Change the fields given; the gateway applies the policy within a second."""
    path = await _project(context, org, project, "guard.write")
    return await anyio.to_thread.run_sync(
        lambda: state.guard.update_policy(path, update, actor=context.principal.key_id)
    )


@router.post(_PROJECT + "/words", response_model=GuardSettings)
async def change_words(
    org: str, project: str, change: WordsChange, context: ContextDep, state: StateDep
) -> GuardSettings:
    """Add and remove sensitive words of the project."""
    path = await _project(context, org, project, "guard.write")
    return await anyio.to_thread.run_sync(
        lambda: state.guard.change_words(path, change, actor=context.principal.key_id)
    )


@router.get("/guard/default", response_model=GuardSettings)
async def get_default(context: ContextDep, state: StateDep) -> GuardSettings:
    """The platform default policy, used by projects without their own and by platform keys."""
    await context.authorize("guard.defaults.read")
    return await anyio.to_thread.run_sync(state.guard.get, None)


@router.patch("/guard/default", response_model=GuardSettings)
async def update_default(update: GuardPolicyUpdate, context: ContextDep, state: StateDep) -> GuardSettings:
    await context.authorize("guard.defaults.write")
    return await anyio.to_thread.run_sync(
        lambda: state.guard.update_policy(None, update, actor=context.principal.key_id)
    )


@router.post("/guard/default/words", response_model=GuardSettings)
async def change_default_words(change: WordsChange, context: ContextDep, state: StateDep) -> GuardSettings:
    await context.authorize("guard.defaults.write")
    return await anyio.to_thread.run_sync(
        lambda: state.guard.change_words(None, change, actor=context.principal.key_id)
    )


@router.post("/guard/scan", response_model=ScanResult)
async def scan(request: ScanRequest, context: ContextDep, state: StateDep) -> ScanResult:
    """Run the detectors on a text: PII entities (type, start, end, text), the masked text,
    sensitive-word hits, the injection score, and what the project's policy would decide."""
    await context.authorize("guard.scan")
    project = None
    if request.project is not None:
        org, _, name = request.project.partition("/")
        project = await _project(context, org, name, "guard.read")
    return await anyio.to_thread.run_sync(
        lambda: state.guard.scan(request.text, project=project, types=request.types)
    )
