"""``create_app(settings)``: the one place that wires store, registry, keys, engines and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi import FastAPI

from stratum import __version__
from stratum.gateway import errors
from stratum.gateway.bootstrap import register_builtin_models
from stratum.gateway.metrics import Metrics
from stratum.gateway.middleware import RequestIdMiddleware
from stratum.gateway.pool import EngineFactory, ModelPool, default_factory
from stratum.gateway.routes import chat, completions, embeddings, health, models
from stratum.gateway.state import AppState
from stratum.governance.service import KeyService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage.db import Database

log = logging.getLogger(__name__)

_PRUNE_INTERVAL_S = 2.0  # how soon a removed model's engine is released


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory | None = None,
    on_ready: Callable[[AppState], None] | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        await anyio.to_thread.run_sync(db.migrate)
        registry = RegistryService(db)
        state = AppState(
            settings=settings,
            db=db,
            registry=registry,
            keys=KeyService(db),
            pool=ModelPool(registry, engine_factory or default_factory(settings)),
            metrics=Metrics(),
        )
        app.state.stratum = state
        state.preload = await anyio.to_thread.run_sync(register_builtin_models, settings, registry)
        for name in state.preload:
            await (state.pool.encoder(name) if _is_encoder(state, name) else state.pool.text_engine(name))
        state.ready = True
        pruner = asyncio.create_task(_prune(state.pool))
        if on_ready is not None:
            on_ready(state)
        try:
            yield
        finally:
            pruner.cancel()
            await state.pool.close()
            db.dispose()

    app = FastAPI(
        title="Stratum",
        version=__version__,
        description="OpenAI-compatible gateway of the Stratum platform.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    errors.install(app)
    for router in (models.router, chat.router, completions.router, embeddings.router, health.router):
        app.include_router(router)
    return app


def _is_encoder(state: AppState, name: str) -> bool:
    return state.registry.get_model(name).kind == "embedding"


async def _prune(pool: ModelPool) -> None:
    while True:
        await asyncio.sleep(_PRUNE_INTERVAL_S)
        try:
            await pool.unload_missing()
        except Exception:  # the store may be briefly unavailable; try again next round
            log.warning("could not prune unloaded models", exc_info=True)
