"""``/healthz`` (process up), ``/readyz`` (store reachable and preloaded models loaded), ``/metrics``."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from stratum.gateway.deps import StateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    store = await anyio.to_thread.run_sync(state.db.ping)
    loaded = sorted(version.ref for version, _ in state.pool.loaded())
    ready = store and state.ready
    body = {"status": "ready" if ready else "not_ready", "store": store, "models_loaded": loaded}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    for version, engine in state.pool.loaded():
        state.metrics.queue_depth.labels(version.name).set(getattr(engine, "queue_depth", 0))
        state.metrics.running.labels(version.name).set(getattr(engine, "running", 0))
        state.metrics.kv_tokens.labels(version.name).set(getattr(engine, "kv_tokens_reserved", 0))
        if (prefix := getattr(engine, "prefix_stats", None)) is not None:
            state.metrics.prefix_hits.labels(version.name).set(prefix.hits)
            state.metrics.prefix_tokens_reused.labels(version.name).set(prefix.tokens_reused)
            state.metrics.prefix_tokens.labels(version.name).set(engine.prefix_cache_tokens)
    state.metrics.loaded_models.set(len(state.pool.loaded()))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
