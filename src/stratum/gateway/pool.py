"""Which engine serves a model reference: resolves through the registry, loads on first use.

Engines are keyed by registry version, so ``demo``, ``demo@1`` and ``demo:prod`` share one engine
when they point at the same version, and a newly added model is served without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from stratum.engine.base import Encoder, TextEngine
from stratum.engine.local import LocalEngine
from stratum.engine.upstream import UpstreamEngine
from stratum.errors import InvalidRequest
from stratum.gateway.ttl import TTLCache
from stratum.registry.schemas import ModelVersionPublic
from stratum.registry.service import RegistryService
from stratum.settings import Settings

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelVersionPublic], TextEngine | Encoder]


def default_factory(settings: Settings) -> EngineFactory:
    def build(version: ModelVersionPublic) -> TextEngine | Encoder:
        if version.kind == "embedding":
            from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, load_encoder

            return load_encoder(version.artifact_uri or BUILTIN_ENCODER_SOURCE)
        if version.source == "upstream":
            assert version.upstream_url is not None
            return UpstreamEngine(
                version.upstream_url,
                model=version.upstream_model or version.name,
                api_key_env=version.api_key_env,
                timeout=settings.upstream_timeout,
            )
        if version.artifact_uri is None:
            raise InvalidRequest(f"model version {version.ref} has no artifact to load")
        if "://" in version.artifact_uri:
            raise InvalidRequest(
                f"model version {version.ref} is in the cold artifact tier ({version.artifact_uri}); "
                f"bring it back with: stratum models move {version.ref} --tier hot",
                param="model",
                code="model_in_cold_tier",
            )
        return LocalEngine(
            Path(version.artifact_uri),
            max_batch=settings.max_batch,
            max_queue=settings.max_queue,
            dtype=settings.dtype,
            prefill_chunk=settings.prefill_chunk,
            max_kv_tokens=settings.max_kv_tokens,
        )

    return build


class ModelPool:
    """Serves: text engines and encoders per registry version, loaded lazily and shared."""

    def __init__(self, registry: RegistryService, factory: EngineFactory) -> None:
        self.registry = registry
        self.factory = factory
        self._engines: dict[str, Any] = {}
        self._versions: dict[str, ModelVersionPublic] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # A model added or removed with the CLI is seen within a second.
        self._refs: TTLCache[str, ModelVersionPublic] = TTLCache(ttl=1.0)

    async def resolve(self, ref: str) -> ModelVersionPublic:
        version = self._refs.get(ref)
        if version is None:
            version = await anyio.to_thread.run_sync(self.registry.resolve, ref)
            self._refs.put(ref, version)
        return version

    async def text_engine(self, ref: str) -> tuple[ModelVersionPublic, TextEngine]:
        version = await self.resolve(ref)
        if version.kind != "chat":
            raise InvalidRequest(
                f"model '{ref}' is an embedding model; use /v1/embeddings",
                param="model",
                code="wrong_model_kind",
            )
        engine: TextEngine = await self._load(version)
        return version, engine

    async def encoder(self, ref: str) -> tuple[ModelVersionPublic, Encoder]:
        version = await self.resolve(ref)
        if version.kind != "embedding":
            raise InvalidRequest(
                f"model '{ref}' is not an embedding model", param="model", code="wrong_model_kind"
            )
        encoder: Encoder = await self._load(version)
        return version, encoder

    async def _load(self, version: ModelVersionPublic) -> Any:
        key = _key(version)
        if key in self._engines:
            return self._engines[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._engines:
                log.info("loading model", extra={"model": version.ref})
                # Factories may read weights (sentence-transformers loads in its constructor).
                engine = await anyio.to_thread.run_sync(self.factory, version)
                if (start := getattr(engine, "start", None)) is not None:
                    await start()
                elif (load := getattr(engine, "load", None)) is not None:
                    await anyio.to_thread.run_sync(load)
                self._engines[key] = engine
                self._versions[key] = version
        return self._engines[key]

    def loaded(self) -> list[tuple[ModelVersionPublic, Any]]:
        return [(self._versions[k], e) for k, e in self._engines.items()]

    async def unload_missing(self) -> None:
        """Close engines whose version left the registry (``stratum models remove``)."""
        models = await anyio.to_thread.run_sync(self.registry.list_models)
        known = {_key(v) for m in models for v in m.versions}
        for key in [k for k in self._engines if k not in known]:
            engine = self._engines.pop(key)
            log.info("unloading model no longer registered", extra={"model": self._versions.pop(key).ref})
            close = getattr(engine, "close", None)
            if close is not None:
                await close()

    async def close(self) -> None:
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if close is not None:
                await close()
        self._engines.clear()
        self._versions.clear()


def _key(version: ModelVersionPublic) -> str:
    # The ref guards against a store that recycles a deleted row's id for another model.
    return f"{version.id}|{version.ref}"
