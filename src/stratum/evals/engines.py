"""A registry version as a started ``TextEngine`` for one evaluation, outside the gateway.

Eval jobs run in a worker's child process, below the gateway layer, so they cannot borrow its
``ModelPool``; this builds the same engines for one use: an upstream client, a local model, or a
LoRA adapter loaded into its base's local engine (each request tagged with the adapter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from stratum.engine.base import GenerationRequest, TextEngine
from stratum.errors import InvalidRequest
from stratum.settings import Settings


class _Adapter:
    def __init__(self, base: Any, adapter: str) -> None:
        self.base, self.adapter, self.info = base, adapter, base.info

    def generate(self, request: GenerationRequest) -> Any:
        return self.base.generate(replace(request, adapter=self.adapter))


def _build(version: Any, settings: Settings) -> Any:
    if version.source == "upstream":
        from stratum.engine.upstream import UpstreamEngine

        return UpstreamEngine(
            version.upstream_url,
            model=version.upstream_model or version.name,
            api_key_env=version.api_key_env,
            timeout=settings.upstream_timeout,
            retries=settings.upstream_retries,
            backoff_s=settings.upstream_backoff,
        )
    if version.artifact_uri is None or "://" in version.artifact_uri:
        raise InvalidRequest(f"model version {version.ref} has no local artifact to load", param="model")
    from stratum.engine.local import LocalEngine

    return LocalEngine(
        Path(version.artifact_uri),
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        dtype=settings.dtype,
        prefill_chunk=settings.prefill_chunk,
        max_kv_tokens=settings.max_kv_tokens,
    )


@asynccontextmanager
async def serve_version(registry: Any, version: Any, settings: Settings) -> AsyncIterator[TextEngine]:
    """``registry`` is a ``RegistryService``; ``version`` one of its resolved versions."""
    if version.kind == "embedding":
        raise InvalidRequest(f"{version.ref} is an embedding model; evals need a text model", param="model")
    adapter = version.variant == "adapter"
    base = registry.adapter_base(version) if adapter else version
    engine = _build(base, settings)
    await engine.start()
    try:
        if not adapter:
            yield engine
            return
        load_adapter = getattr(engine, "load_adapter", None)
        if load_adapter is None:
            raise InvalidRequest(f"the engine of '{base.ref}' cannot serve LoRA adapters", param="model")
        await load_adapter(version.ref, Path(version.artifact_uri))
        yield _Adapter(engine, version.ref)  # type: ignore[misc]
    finally:
        await engine.close()
