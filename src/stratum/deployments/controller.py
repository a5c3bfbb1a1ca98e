"""The canary controller: one ``tick`` judges every running canary and applies the verdict.

The gateway's lifespan calls ``tick`` every ``STRATUM_CANARY_INTERVAL`` seconds in a worker thread.
Every gateway may run it; ``DeploymentService.apply`` makes sure one change is applied once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from stratum.deployments import health
from stratum.deployments.schemas import DeploymentPublic, Verdict
from stratum.deployments.service import DeploymentService, window_start
from stratum.registry.feedback import FeedbackService
from stratum.storage import Database, utcnow

log = logging.getLogger(__name__)


class CanaryController:
    """Serves: the gateway's background task (``tick``) and tests that drive it by hand."""

    def __init__(self, db: Database, deployments: DeploymentService, feedback: FeedbackService) -> None:
        self._db = db
        self._deployments = deployments
        self._feedback = feedback

    def judge(self, deployment: DeploymentPublic, *, now: datetime | None = None) -> Verdict:
        now = now or utcnow()
        assert deployment.candidate_ref is not None
        refs = [deployment.stable_ref, deployment.candidate_ref]
        window = window_start(deployment, now)
        stats = health.arm_stats(
            self._db, self._feedback, deployment=deployment.name, refs=refs, since=window
        )
        step_stats = stats
        if deployment.step_started_at > window:
            step_stats = health.arm_stats(
                self._db,
                self._feedback,
                deployment=deployment.name,
                refs=refs,
                since=deployment.step_started_at,
            )
        return health.judge(deployment, stats, now=now, step_stats=step_stats)

    def tick(self, *, now: datetime | None = None) -> list[tuple[str, Verdict]]:
        """Judge every running canary; returns the verdicts that changed something."""
        now = now or utcnow()
        applied = []
        for deployment in self._deployments.routing_table().values():
            if deployment.status != "canary":
                continue
            verdict = self.judge(deployment, now=now)
            if verdict.action == "wait":
                continue
            if (
                self._deployments.apply(deployment.name, verdict, step_index=deployment.step_index)
                is not None
            ):
                log.info(
                    "deployment %s: %s (%s)",
                    deployment.name,
                    verdict.action,
                    "; ".join(verdict.reasons),
                    extra={"deployment": deployment.name, "action": verdict.action},
                )
                applied.append((deployment.name, verdict))
        return applied
