"""A registry version as an engine: the one place that turns a model entry into something that runs.

The gateway's ``ModelPool`` builds its engines here (and keeps them, within the model cache), and an
evaluation builds one here for a single use (``serve_version``: eval jobs run in a worker's child
process, below the gateway layer, so they cannot borrow the pool). Both load a LoRA adapter into its
base's engine and both refuse a base whose files no longer match the registered checksum.

Engines are imported lazily: importing the registry must not import torch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stratum.errors import Conflict, InvalidRequest
from stratum.registry.checksum import directory_checksum
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings

if TYPE_CHECKING:
    import httpx

    from stratum.engine.base import Encoder, GenerationChunk, GenerationRequest, ModelInfo, TextEngine


def build_engine(
    version: ModelVersionPublic, settings: Settings, *, http: httpx.AsyncClient | None = None
) -> TextEngine | Encoder:
    """The (not yet started) engine or encoder for ``version``.

    ``http``: a shared upstream connection pool (``engine.upstream.shared_client``), owned by the
    caller; without it an upstream engine opens and closes its own client.
    """
    if version.kind == "embedding":
        from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, load_encoder

        return load_encoder(version.artifact_uri or BUILTIN_ENCODER_SOURCE)
    if version.source == "upstream":
        from stratum.engine.upstream import UpstreamEngine

        assert version.upstream_url is not None
        return UpstreamEngine(
            version.upstream_url,
            model=version.upstream_model or version.name,
            api_key_env=version.api_key_env,
            timeout=settings.upstream_timeout,
            client=http,
            retries=settings.upstream_retries,
            backoff_s=settings.upstream_backoff,
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
    directory = Path(version.artifact_uri)
    if _onnx_only(directory):
        raise InvalidRequest(
            f"model version {version.ref} is an ONNX export; the embedded engine serves PyTorch "
            "weights (safetensors). Serve its parent, or run the export with ONNX Runtime.",
            param="model",
            code="unsupported_model_format",
        )
    from stratum.engine.local import LocalEngine

    return LocalEngine(
        directory,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        dtype=settings.dtype,
        prefill_chunk=settings.prefill_chunk,
        max_kv_tokens=settings.max_kv_tokens,
        prefix_cache_tokens=settings.prefix_cache_tokens if settings.prefix_cache else 0,
    )


def _onnx_only(directory: Path) -> bool:
    """An ONNX graph without PyTorch weights beside it (``stratum compress onnx``)."""
    if not (directory / "model.onnx").is_file():
        return False
    return not any(directory.glob("*.safetensors")) and not any(directory.glob("*.bin"))


def verify_base_files(base: ModelVersionPublic) -> None:
    """The base's files on disk must still be the ones registered (and the adapter trained on).

    Hashes the whole directory: callers that serve many requests remember a verified base.
    """
    if base.artifact_uri is None:
        return
    actual = directory_checksum(Path(base.artifact_uri))
    if actual != base.checksum:
        raise Conflict(
            f"The files of '{base.ref}' at {base.artifact_uri} changed since it was registered "
            f"(checksum {actual[:12]}…, registered {str(base.checksum)[:12]}…); refusing to serve "
            "adapters on them. Register the new weights as a new version.",
            param="model",
            code="adapter_base_mismatch",
        )


class AdapterEngine:
    """A LoRA adapter as a ``TextEngine``: the shared base engine, each request tagged with the adapter."""

    def __init__(self, base: Any, adapter: str) -> None:
        self.base = base
        self.adapter = adapter
        self.info: ModelInfo = base.info  # the base is started: its info is final

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the adapter belongs to the base engine, which unloads it

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return cast(
            "AsyncIterator[GenerationChunk]", self.base.generate(replace(request, adapter=self.adapter))
        )

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        return cast("int | None", self.base.count_prompt_tokens(request))

    @property
    def queue_depth(self) -> int:
        return int(self.base.queue_depth)


@asynccontextmanager
async def serve_version(
    registry: Any, version: ModelVersionPublic, settings: Settings
) -> AsyncIterator[TextEngine]:
    """A started text engine for one use of ``version`` (a ``RegistryService`` version), closed after.

    An adapter is loaded into a fresh engine of its base, after the base's files are checked.
    """
    if version.kind == "embedding":
        raise InvalidRequest(f"{version.ref} is an embedding model; a text model is needed", param="model")
    adapter = version.variant == "adapter"
    base = registry.adapter_base(version) if adapter else version
    if adapter:
        verify_base_files(base)
    engine = cast("TextEngine", build_engine(base, settings))
    await engine.start()
    try:
        if not adapter:
            yield engine
            return
        load_adapter = getattr(engine, "load_adapter", None)
        if load_adapter is None:
            raise InvalidRequest(f"the engine of '{base.ref}' cannot serve LoRA adapters", param="model")
        assert version.artifact_uri is not None  # adapters are registered with their directory
        await load_adapter(version.ref, Path(version.artifact_uri))
        yield AdapterEngine(engine, version.ref)
    finally:
        await engine.close()
