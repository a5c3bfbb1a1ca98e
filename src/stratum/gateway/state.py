"""Everything the running gateway holds, owned by ``create_app``'s lifespan (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.deployments.controller import CanaryController
from stratum.deployments.router import DeploymentRouter
from stratum.deployments.service import DeploymentService
from stratum.gateway.metrics import Metrics
from stratum.gateway.pool import ModelPool
from stratum.gateway.ttl import TTLCache
from stratum.governance.audit import AuditService
from stratum.governance.audit_writer import AuditWriter
from stratum.governance.guard.service import GuardService
from stratum.governance.prices import PriceService
from stratum.governance.quotas import QuotaService
from stratum.governance.rules import PolicyService
from stratum.governance.service import KeyService, Principal
from stratum.governance.tenancy import TenancyService
from stratum.governance.usage import UsageService
from stratum.jobs.service import JobService
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.sql.service import DatabaseService
from stratum.registry.feedback import FeedbackService
from stratum.registry.lineage import LineageService
from stratum.registry.responses import ResponseLog
from stratum.registry.service import RegistryService
from stratum.routing import RoutingServices
from stratum.settings import Settings
from stratum.storage.db import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    registry: RegistryService
    keys: KeyService
    pool: ModelPool
    tenancy: TenancyService
    policies: PolicyService
    quotas: QuotaService
    usage: UsageService
    audit: AuditService
    prices: PriceService
    jobs: JobService
    # Releases: lineage, feedback, deployments (see create_app).
    responses: ResponseLog
    feedback: FeedbackService
    lineage: LineageService
    deployments: DeploymentService
    router: DeploymentRouter
    canary: CanaryController
    guard: GuardService
    audit_writer: AuditWriter
    databases: DatabaseService
    metrics: Metrics = field(default_factory=Metrics)
    # Served names to preload at start; /readyz is green once they are loaded.
    preload: list[str] = field(default_factory=list)
    ready: bool = False
    knowledge: KnowledgeService | None = None
    # Verified keys by SHA-256 of the key: a revoked key stops working within a second.
    principals: TTLCache[bytes, Principal] = field(default_factory=lambda: TTLCache(ttl=1.0))
    # Routes, fallback chains, hand-off queue and response cache (built by create_app).
    routing: RoutingServices | None = None
