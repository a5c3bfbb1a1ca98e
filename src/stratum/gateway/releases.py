"""Wiring of the releases services into the gateway: lineage, feedback, deployments, and the
background tasks that keep them current (response-log flush, routing-table refresh, canary checks)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio

from stratum.deployments.controller import CanaryController
from stratum.deployments.router import DeploymentRouter
from stratum.deployments.service import DeploymentService
from stratum.gateway.state import AppState
from stratum.registry.feedback import FeedbackService
from stratum.registry.lineage import LineageService
from stratum.registry.responses import ResponseLog
from stratum.registry.service import RegistryService
from stratum.storage.db import Database, utcnow

log = logging.getLogger(__name__)

# How soon a deployment change (rollback by any gateway, CLI edit) reaches this gateway's routing.
ROUTING_REFRESH_S = 1.0
# Expired served-response records are deleted about once an hour.
_RETENTION_INTERVAL_S = 3600.0


def release_services(db: Database, registry: RegistryService) -> dict[str, Any]:
    """The ``AppState`` fields of the releases domain."""
    responses = ResponseLog(db)
    feedback = FeedbackService(db, responses)
    deployments = DeploymentService(db, registry)
    return {
        "responses": responses,
        "feedback": feedback,
        "lineage": LineageService(db),
        "deployments": deployments,
        "router": DeploymentRouter(deployments.routing_table, ttl=ROUTING_REFRESH_S),
        "canary": CanaryController(db, deployments, feedback),
    }


def release_tasks(state: AppState) -> list[asyncio.Task[None]]:
    """Start the background tasks; the lifespan cancels them (and flushes once more) at shutdown."""
    state.router.refresh()
    settings = state.settings

    async def flush_then_judge() -> None:
        # Outcomes are flushed before judging, so this gateway's own traffic counts at once.
        await anyio.to_thread.run_sync(state.responses.flush)
        if await anyio.to_thread.run_sync(lambda: state.canary.tick()):
            await anyio.to_thread.run_sync(state.router.refresh)  # apply our own change at once

    def prune() -> int:
        pruned = state.responses.prune(utcnow() - timedelta(days=settings.response_retention_days))
        # Prompts kept with feedback follow the audit's retention unless told otherwise.
        days = settings.prompt_retention_days or settings.audit_retention_days
        if days is not None:
            pruned += state.feedback.erase_prompts(before=utcnow() - timedelta(days=days))
        return pruned

    return [
        asyncio.create_task(
            _every(_RETENTION_INTERVAL_S, "prune served responses", lambda: anyio.to_thread.run_sync(prune))
        ),
        asyncio.create_task(
            _every(
                settings.response_flush_interval,
                "flush served responses",
                lambda: anyio.to_thread.run_sync(state.responses.flush),
            )
        ),
        asyncio.create_task(
            _every(
                ROUTING_REFRESH_S,
                "refresh deployments",
                lambda: anyio.to_thread.run_sync(state.router.refresh),
            )
        ),
        asyncio.create_task(_every(settings.canary_interval, "check canaries", flush_then_judge)),
    ]


async def _every(seconds: float, what: str, work: Callable[[], Awaitable[Any]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:  # the store may be briefly unavailable; try again next round
            log.warning("could not %s", what, exc_info=True)
