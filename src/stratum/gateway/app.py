"""``create_app(settings)``: the one place that wires store, registry, keys, engines and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi import FastAPI

from stratum import __version__
from stratum.gateway import errors, retention
from stratum.gateway.bootstrap import register_builtin_models
from stratum.gateway.metering import SettleMiddleware
from stratum.gateway.metrics import Metrics
from stratum.gateway.middleware import RequestIdMiddleware
from stratum.gateway.pool import EngineFactory, ModelPool, default_factory
from stratum.gateway.routes import admin, chat, completions, embeddings, guard, health, models
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
        state = AppState(
            settings=settings,
            db=db,
            registry=registry,
            keys=KeyService(db),
            pool=ModelPool(registry, engine_factory or default_factory(settings)),
            metrics=Metrics(),
            tenancy=TenancyService(db),
            policies=PolicyService(db),
            quotas=QuotaService(quota_counters),
            usage=UsageService(db),
            audit=AuditService(db),
            prices=PriceService(db),
            guard=GuardService(db),
            audit_writer=AuditWriter(db),
        )
        app.state.stratum = state
        state.preload = await anyio.to_thread.run_sync(register_builtin_models, settings, registry)
        for name in state.preload:
            await (state.pool.encoder(name) if _is_encoder(state, name) else state.pool.text_engine(name))
        state.ready = True
        pruner = asyncio.create_task(_prune(state.pool))
        counter_pruner = asyncio.create_task(_prune_counters(state.quotas))
        audit_pruner = asyncio.create_task(retention.prune_periodically(state.audit, settings))
        if on_ready is not None:
            on_ready(state)
        try:
            yield
        finally:
            pruner.cancel()
            counter_pruner.cancel()
            audit_pruner.cancel()
            await state.pool.close()
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
        guard.router,
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
