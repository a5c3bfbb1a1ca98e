"""Which engine serves a model reference: resolves through the registry, loads on first use.

Engines are keyed by registry version, so ``demo``, ``demo@1`` and ``demo:prod`` share one engine
when they point at the same version, and a newly added model is served without a restart. An
adapter version (``support-bot`` → ``qwen-mini@1`` + LoRA) is loaded INTO its base's engine, so
the base and all its adapters share one copy of the weights and one continuous batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import anyio
import httpx

from stratum.engine.base import Encoder, TextEngine
from stratum.errors import EngineError, InvalidRequest, Overloaded, StratumError
from stratum.gateway.metrics import Metrics
from stratum.gateway.model_cache import CacheEntry, CacheLedger
from stratum.gateway.ttl import TTLCache
from stratum.registry.engines import AdapterEngine, build_engine, verify_base_files
from stratum.registry.schemas import ModelVersionPublic
from stratum.registry.service import RegistryService
from stratum.settings import Settings

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelVersionPublic], TextEngine | Encoder]


def default_factory(settings: Settings, *, http: httpx.AsyncClient | None = None) -> EngineFactory:
    """``http``: the shared upstream connection pool (``engine.upstream.shared_client``)."""
    return functools.partial(build_engine, settings=settings, http=http)


class ModelPool:
    """Serves: text engines, LoRA adapters on shared base engines, and encoders per registry
    version, loaded on first use within the model cache's memory budget (see ``model_cache``)."""

    def __init__(
        self,
        registry: RegistryService,
        factory: EngineFactory,
        *,
        cache_bytes: int | None = None,
        pinned: Collection[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.factory = factory
        self.metrics = metrics
        self.pinned_refs = set(pinned)
        self._cache = CacheLedger(cache_bytes)
        self._locks: dict[str, asyncio.Lock] = {}
        # A model added or removed with the CLI is seen within a second.
        self._refs: TTLCache[str, ModelVersionPublic] = TTLCache(ttl=1.0)
        self._bases: TTLCache[str, ModelVersionPublic] = TTLCache(ttl=1.0)
        # Base engines whose files were checked against the registry checksum (adapters need that).
        self._verified: set[str] = set()

    async def resolve(self, ref: str) -> ModelVersionPublic:
        version = self._refs.get(ref)
        if version is None:
            version = await anyio.to_thread.run_sync(self.registry.resolve, ref)
            self._refs.put(ref, version)
        return version

    async def text_engine(self, ref: str) -> tuple[ModelVersionPublic, TextEngine]:
        return await self.text_engine_of(await self.resolve(ref))

    async def text_engine_of(self, version: ModelVersionPublic) -> tuple[ModelVersionPublic, TextEngine]:
        """The engine of an already resolved version (``resolve``)."""
        if version.kind != "chat":
            raise InvalidRequest(
                f"model '{version.ref}' is an embedding model; use /v1/embeddings",
                param="model",
                code="wrong_model_kind",
            )
        if version.variant == "adapter":
            return version, await self._adapter(version)
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

    # -- loading -------------------------------------------------------------------------------

    async def _load(self, version: ModelVersionPublic, *, keep: frozenset[str] = frozenset()) -> Any:
        key = _key(version)
        if (entry := self._cache.entries.get(key)) is not None:
            self._hit(entry)
            return entry.engine
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if (entry := self._cache.entries.get(key)) is not None:
                self._hit(entry)
                return entry.engine
            estimate = _estimated_bytes(version)
            await self._make_room(version, estimate, keep=keep)
            log.info("loading model", extra={"model": version.ref})
            # Factories may read weights (sentence-transformers loads in its constructor).
            engine = await anyio.to_thread.run_sync(self.factory, version)
            if (start := getattr(engine, "start", None)) is not None:
                await start()
            elif (load := getattr(engine, "load", None)) is not None:
                await anyio.to_thread.run_sync(load)
            nbytes = int(getattr(engine, "memory_bytes", 0) or 0) or estimate
            self._add(CacheEntry(key, "model", version, engine, nbytes, pinned=self._pinned(version)))
            if nbytes > estimate:
                await self._settle({key, *keep})
        return engine

    async def _adapter(self, version: ModelVersionPublic) -> AdapterEngine:
        key = _key(version)
        if (entry := self._cache.entries.get(key)) is not None:
            self._hit(entry)
            base_entry = self._cache.entries.get(entry.base_key or "")
            if base_entry is not None:
                base_entry.touch()  # the base serves this request too
                return AdapterEngine(entry.engine, key)
        base = self._bases.get(key)
        if base is None:
            base = await anyio.to_thread.run_sync(self.registry.adapter_base, version)
            self._bases.put(key, base)
        base_key = _key(base)
        engine = await self._load(base)
        load_adapter = getattr(engine, "load_adapter", None)
        if load_adapter is None:
            raise InvalidRequest(f"the engine of '{base.ref}' cannot serve LoRA adapters", param="model")
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._cache.entries.get(key)
            if entry is not None and entry.engine is engine:
                return AdapterEngine(engine, key)
            await self._verify_base(base, base_key)
            assert version.artifact_uri is not None  # adapters are registered with their directory
            estimate = int(version.metadata.get("size_bytes") or 0)
            await self._make_room(version, estimate, keep={base_key})
            log.info("loading adapter", extra={"model": version.ref, "base": base.ref})
            nbytes = await load_adapter(key, Path(version.artifact_uri))
            self._add(
                CacheEntry(
                    key, "adapter", version, engine, nbytes, pinned=self._pinned(version), base_key=base_key
                )
            )
            if nbytes > estimate:
                await self._settle({key, base_key})
        return AdapterEngine(engine, key)

    async def _verify_base(self, base: ModelVersionPublic, base_key: str) -> None:
        if base_key in self._verified:
            return
        await anyio.to_thread.run_sync(verify_base_files, base)
        self._verified.add(base_key)

    # -- the cache -----------------------------------------------------------------------------

    def _pinned(self, version: ModelVersionPublic) -> bool:
        return bool(version.metadata.get("pinned")) or bool(
            {version.ref, version.name, *(f"{version.name}:{a}" for a in version.aliases)} & self.pinned_refs
        )

    def _hit(self, entry: CacheEntry) -> None:
        entry.touch()
        if self.metrics is not None:
            self.metrics.cache_hits.labels(entry.version.name, entry.kind).inc()

    def _add(self, entry: CacheEntry) -> None:
        entry.touch()
        self._cache.entries[entry.key] = entry
        if self.metrics is not None:
            self.metrics.cache_loads.labels(entry.version.name, entry.kind).inc()
            self.metrics.cache_bytes.set(self._cache.used)

    async def _make_room(self, version: ModelVersionPublic, nbytes: int, *, keep: Collection[str]) -> None:
        budget = self._cache.budget
        if budget is None or self._cache.fits(nbytes):
            return
        if nbytes > budget:
            raise EngineError(
                f"'{version.ref}' needs about {nbytes} bytes, more than the model cache budget "
                f"STRATUM_MODEL_CACHE_BYTES={budget}.",
                code="model_too_large",
            )
        victims = self._cache.victims(nbytes, keep=set(keep))
        if victims is None:
            raise Overloaded(
                f"the model cache is full ({self._cache.used} of {budget} bytes) with models that are "
                f"busy or pinned; cannot load '{version.ref}' now",
                retry_after=2,
            )
        for entry in victims:
            await self._evict(entry, reason="cache full")

    async def _settle(self, keep: set[str]) -> None:
        """After a load bigger than estimated (files smaller than weights in memory): evict to fit."""
        if self._cache.fits(0):
            return
        victims = self._cache.victims(0, keep=keep)
        if victims is None:
            log.warning("model cache over budget: %d of %s bytes", self._cache.used, self._cache.budget)
            return
        for entry in victims:
            await self._evict(entry, reason="cache full")

    async def _evict(self, entry: CacheEntry, *, reason: str) -> None:
        if self._cache.entries.pop(entry.key, None) is None:
            return
        log.info("unloading %s (%s)", entry.kind, reason, extra={"model": entry.version.ref})
        if entry.kind == "adapter":
            unload = getattr(entry.engine, "unload_adapter", None)
            if unload is not None and self._cache.entries.get(entry.base_key or "") is not None:
                await unload(entry.key)
        else:
            for adapter in self._cache.dependants(entry.key):
                self._cache.entries.pop(adapter.key, None)
            self._verified.discard(entry.key)
            close = getattr(entry.engine, "close", None)
            if close is not None:
                await close()
        if self.metrics is not None:
            if reason == "cache full":
                self.metrics.cache_evictions.labels(entry.version.name, entry.kind).inc()
            self.metrics.cache_bytes.set(self._cache.used)

    async def preload_pinned(self) -> list[str]:
        """Load the pinned models and adapters at start-up; returns the refs loaded.

        A ref named in ``STRATUM_PINNED_MODELS`` that cannot be loaded fails the start (a wrong
        setting should be seen at once); a version pinned in registry metadata that cannot be
        loaded (files moved, say) is logged and skipped, so one bad entry cannot keep the server down.
        """
        models = await anyio.to_thread.run_sync(self.registry.list_models)
        from_metadata = {v.ref for m in models for v in m.versions if v.metadata.get("pinned")}
        loaded = []
        for ref in sorted(self.pinned_refs | from_metadata):
            try:
                version = await self.resolve(ref)
                if version.kind == "embedding":
                    await self.encoder(ref)
                else:
                    await self.text_engine(ref)
            except StratumError:
                if ref in self.pinned_refs:
                    raise
                log.warning("could not preload pinned model %s", ref, exc_info=True)
                continue
            loaded.append(ref)
        return loaded

    def loaded(self) -> list[tuple[ModelVersionPublic, Any]]:
        """Loaded engines and encoders (adapters live inside their base's engine)."""
        return [(e.version, e.engine) for e in self._cache.entries.values() if e.kind == "model"]

    def loaded_adapters(self) -> list[ModelVersionPublic]:
        return [e.version for e in self._cache.entries.values() if e.kind == "adapter"]

    async def unload_missing(self) -> None:
        """Unload engines and adapters whose version left the registry (``stratum models remove``)."""
        models = await anyio.to_thread.run_sync(self.registry.list_models)
        known = {_key(v) for m in models for v in m.versions}
        for entry in [e for e in self._cache.entries.values() if e.key not in known]:
            await self._evict(entry, reason="no longer registered")

    async def close(self) -> None:
        for entry in list(self._cache.entries.values()):
            if entry.kind == "model" and (close := getattr(entry.engine, "close", None)) is not None:
                await close()
        self._cache.entries.clear()


def _estimated_bytes(version: ModelVersionPublic) -> int:
    """Memory a version will take before it is loaded: its files' size (weights dominate)."""
    if version.source == "upstream":
        return 0
    return int(version.metadata.get("size_bytes") or 0)


def _key(version: ModelVersionPublic) -> str:
    # The ref guards against a store that recycles a deleted row's id for another model.
    return f"{version.id}|{version.ref}"
