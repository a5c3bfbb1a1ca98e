"""``create_app(settings)``: the one place that wires store, registry, keys, engines and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi import FastAPI

from stratum import __version__
from stratum.engine.upstream import shared_client
from stratum.gateway import dispatch, errors, retention
from stratum.gateway.bootstrap import register_builtin_models
from stratum.gateway.metering import SettleMiddleware
from stratum.gateway.metrics import Metrics
from stratum.gateway.middleware import RequestIdMiddleware
from stratum.gateway.pool import EngineFactory, ModelPool, default_factory
from stratum.gateway.releases import release_services, release_tasks
from stratum.gateway.routes import (
    admin,
    chat,
    completions,
    databases,
    datasets,
    embeddings,
    feedback,
    guard,
    health,
    jobs,
    kb,
    models,
    releases,
    routing,
)
from stratum.gateway.state import AppState
from stratum.governance.audit import AuditService
from stratum.governance.audit_writer import AuditWriter
from stratum.governance.counters import CounterStore, StoreCounters
from stratum.governance.guard.service import GuardService
from stratum.governance.prices import PriceService
from stratum.governance.quotas import QuotaService
from stratum.governance.redis_counters import RedisCounterStore
from stratum.governance.rules import PolicyService
from stratum.governance.service import KeyService
from stratum.governance.tenancy import TenancyService
from stratum.governance.usage import UsageService
from stratum.jobs.service import JobService
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.sql.service import DatabaseService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage.db import Database, utcnow

log = logging.getLogger(__name__)

_PRUNE_INTERVAL_S = 2.0  # how soon a removed model's engine is released
_COUNTER_PRUNE_INTERVAL_S = 60.0  # finished quota windows are deleted about once a minute


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory | None = None,
    on_ready: Callable[[AppState], None] | None = None,
    counters: CounterStore | None = None,
) -> FastAPI:
    """The gateway. ``counters`` replaces the quota counters chosen from settings (tests pass a fake)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        await anyio.to_thread.run_sync(db.migrate)
        registry = RegistryService(db)
        quota_counters = (
            counters
            if counters is not None
            else await anyio.to_thread.run_sync(_counters_from_settings, settings, db)
        )
        metrics = Metrics()
        # One HTTP/2-capable connection pool for every upstream engine.
        http = shared_client(timeout=settings.upstream_timeout, http2=settings.upstream_http2)
        state = AppState(
            settings=settings,
            db=db,
            registry=registry,
            keys=KeyService(db),
            pool=ModelPool(
                registry,
                engine_factory or default_factory(settings, http=http),
                cache_bytes=settings.model_cache_bytes,
                pinned=settings.pinned_model_refs,
                metrics=metrics,
            ),
            metrics=metrics,
            tenancy=TenancyService(db),
            policies=PolicyService(db),
            quotas=QuotaService(quota_counters),
            usage=UsageService(db),
            audit=AuditService(db),
            prices=PriceService(db),
            guard=GuardService(db),
            audit_writer=AuditWriter(db),
            **release_services(db, registry),
            knowledge=KnowledgeService(db),
            databases=DatabaseService(db, settings),
            jobs=JobService(db, jobs_dir=settings.jobs_dir),
        )
        app.state.stratum = state
        state.preload = await anyio.to_thread.run_sync(register_builtin_models, settings, registry)
        for name in state.preload:
            await (state.pool.encoder(name) if _is_encoder(state, name) else state.pool.text_engine(name))
        await state.pool.preload_pinned()
        state.routing = await dispatch.start_routing(state)
        state.ready = True
        pruner = asyncio.create_task(_prune(state.pool))
        health = asyncio.create_task(dispatch.health_loop(state))
        counter_pruner = asyncio.create_task(_prune_counters(state.quotas))
        audit_pruner = asyncio.create_task(retention.prune_periodically(state.audit, settings))
        releases = release_tasks(state)
        if on_ready is not None:
            on_ready(state)
        try:
            yield
        finally:
            pruner.cancel()
            counter_pruner.cancel()
            audit_pruner.cancel()
            health.cancel()
            for task in releases:
                task.cancel()
            await anyio.to_thread.run_sync(state.responses.flush)
            await state.pool.close()
            await http.aclose()
            dispatch.stop_routing(state)
            # After the engines: requests still finishing have settled; write their records.
            await anyio.to_thread.run_sync(state.audit_writer.close)
            if counters is None and isinstance(quota_counters, RedisCounterStore):
                quota_counters.close()
            db.dispose()

    app = FastAPI(
        title="Stratum",
        version=__version__,
        description="OpenAI-compatible gateway of the Stratum platform.",
        lifespan=lifespan,
    )
    app.add_middleware(SettleMiddleware)
    app.add_middleware(RequestIdMiddleware)
    errors.install(app)
    for router in (
        models.router,
        chat.router,
        completions.router,
        embeddings.router,
        health.router,
        admin.router,
        datasets.router,
        guard.router,
        routing.router,
        routing.client_router,
        feedback.router,
        releases.router,
        kb.router,
        jobs.router,
        databases.router,
    ):
        app.include_router(router)
    return app


def _counters_from_settings(settings: Settings, db: Database) -> CounterStore:
    """Redis when ``STRATUM_REDIS_URL`` is set (pinged now: a wrong URL fails the start), else the store."""
    if settings.redis_url is None:
        return StoreCounters(db)
    store = RedisCounterStore(settings.redis_url.get_secret_value())
    store.ping()
    return store


def _is_encoder(state: AppState, name: str) -> bool:
    return state.registry.get_model(name).kind == "embedding"


async def _prune(pool: ModelPool) -> None:
    while True:
        await asyncio.sleep(_PRUNE_INTERVAL_S)
        try:
            await pool.unload_missing()
        except Exception:  # the store may be briefly unavailable; try again next round
            log.warning("could not prune unloaded models", exc_info=True)


async def _prune_counters(quotas: QuotaService) -> None:
    while True:
        await asyncio.sleep(_COUNTER_PRUNE_INTERVAL_S)
        try:
            await anyio.to_thread.run_sync(quotas.counters.prune, utcnow())
        except Exception:  # the store may be briefly unavailable; try again next round
            log.warning("could not prune quota counters", exc_info=True)
