"""``/admin/v1`` for releases: deployments (canary, A/B), lineage and feedback.

Deployments route public model names for every tenant and lineage spans every domain, so these
routes are platform-level: the policy grants ``deployments.*``, ``lineage.read`` and
``feedback.read`` to the admin role only (tenant keys get the same 403 naming ``rbac.<role>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import anyio
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from stratum.deployments.abtest import report
from stratum.deployments.schemas import ABReport, DeploymentEvent, DeploymentPublic, Thresholds
from stratum.deployments.service import DEFAULT_INTERVAL_S, DEFAULT_STEPS
from stratum.errors import InvalidRequest
from stratum.gateway.deps import ContextDep, StateDep
from stratum.registry.feedback import FeedbackPublic
from stratum.registry.lineage import LineageGraph, parse_node

router = APIRouter(prefix="/admin/v1", tags=["releases"])


class CanaryCreate(BaseModel):
    candidate: str = Field(description="Version to release: 2 or NAME@2.")
    stable: str | None = Field(
        default=None, description="Version to compare with (default: what NAME serves)."
    )
    steps: list[float] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    interval_s: float = DEFAULT_INTERVAL_S
    thresholds: Thresholds = Field(default_factory=Thresholds)


class ABCreate(BaseModel):
    arms: dict[str, float] = Field(description="Version (2 or NAME@2) → percent; the percents add up to 100.")


@router.get("/deployments", response_model=list[DeploymentPublic])
async def list_deployments(context: ContextDep, state: StateDep) -> list[DeploymentPublic]:
    await context.authorize("deployments.read")
    return await anyio.to_thread.run_sync(state.deployments.list_deployments)


@router.get("/deployments/{name:path}/history", response_model=list[DeploymentEvent])
async def deployment_history(
    name: str, context: ContextDep, state: StateDep, limit: int = Query(default=100, ge=1, le=1000)
) -> list[DeploymentEvent]:
    """Starts, steps, promotions and rollbacks, oldest first, with the numbers behind each."""
    await context.authorize("deployments.read")
    return await anyio.to_thread.run_sync(lambda: state.deployments.history(name, limit=limit))


@router.get("/deployments/{name:path}/report", response_model=ABReport)
async def ab_report(name: str, context: ContextDep, state: StateDep) -> ABReport:
    """Per-arm metrics of an A/B test and the significance of the difference in feedback."""
    await context.authorize("deployments.read")
    return await anyio.to_thread.run_sync(lambda: report(state.db, state.deployments, state.feedback, name))


@router.post("/deployments/{name:path}/canary", response_model=DeploymentPublic, status_code=201)
async def start_canary(
    name: str, spec: CanaryCreate, context: ContextDep, state: StateDep
) -> DeploymentPublic:
    await context.authorize("deployments.write")
    return await anyio.to_thread.run_sync(
        lambda: state.deployments.start_canary(
            name=name,
            candidate=spec.candidate,
            stable=spec.stable,
            steps=spec.steps,
            interval_s=spec.interval_s,
            thresholds=spec.thresholds,
            actor=context.principal.key_id,
        )
    )


@router.post("/deployments/{name:path}/ab", response_model=DeploymentPublic, status_code=201)
async def start_ab(name: str, spec: ABCreate, context: ContextDep, state: StateDep) -> DeploymentPublic:
    await context.authorize("deployments.write")
    return await anyio.to_thread.run_sync(
        lambda: state.deployments.start_ab(name=name, arms=spec.arms, actor=context.principal.key_id)
    )


@router.post("/deployments/{name:path}/{action}", response_model=DeploymentPublic)
async def settle(
    name: str, action: Literal["promote", "rollback", "stop"], context: ContextDep, state: StateDep
) -> DeploymentPublic:
    """Promote or roll back a running canary now, or stop routing the name."""
    await context.authorize("deployments.write")
    service = state.deployments
    method = {"promote": service.promote, "rollback": service.rollback, "stop": service.stop}[action]
    return await anyio.to_thread.run_sync(lambda: method(name, actor=context.principal.key_id))


@router.get("/deployments/{name:path}", response_model=DeploymentPublic)
async def get_deployment(name: str, context: ContextDep, state: StateDep) -> DeploymentPublic:
    await context.authorize("deployments.read")
    return await anyio.to_thread.run_sync(lambda: state.deployments.get(name))


@router.get("/lineage", response_model=LineageGraph)
async def lineage(
    context: ContextDep,
    state: StateDep,
    node: str = Query(description="NAME@VERSION of a model, or KIND:ID (dataset:faq@2, job:ID …)."),
    depth: int = Query(default=3, ge=1, le=16),
) -> LineageGraph:
    """The lineage graph around a node: what produced it and what it produced."""
    await context.authorize("lineage.read")
    start = parse_node(node)
    return await anyio.to_thread.run_sync(lambda: state.lineage.graph(start, depth))


@router.get("/feedback", response_model=list[FeedbackPublic])
async def list_feedback(
    context: ContextDep,
    state: StateDep,
    model: str | None = Query(default=None, description="NAME (every version) or NAME@VERSION."),
    since: datetime | None = Query(default=None, description="Feedback at or after this instant (ISO 8601)."),
    max_score: float | None = Query(default=None, ge=0, le=1, description="Only scores at or below this."),
    with_correction: bool = Query(default=False, description="Only feedback carrying a correction."),
    limit: int = Query(default=100, ge=1, le=10_000),
) -> list[FeedbackPublic]:
    """Feedback oldest first, e.g. low-scored answers with corrections for a dataset."""
    await context.authorize("feedback.read")
    if since is not None and since.tzinfo is None:
        raise InvalidRequest("since needs a time zone (e.g. 2026-01-01T00:00:00Z)", param="since")
    return await anyio.to_thread.run_sync(
        lambda: state.feedback.list_feedback(
            model_ref=model, since=since, max_score=max_score, with_correction=with_correction, limit=limit
        )
    )
