"""Registers what the platform serves out of the box: the demo chat model and the bundled encoder.

Runs at every start and is idempotent: a model already registered with the same artifact checksum
is left alone, so ``make run`` twice does not pile up versions.
"""

from __future__ import annotations

import logging

from stratum.engine.base import Encoder
from stratum.engine.embeddings import (
    BUILTIN_ENCODER_NAME,
    BUILTIN_ENCODER_SOURCE,
    BUILTIN_STUDENT_4L_NAME,
    BUILTIN_STUDENT_4L_SOURCE,
    BUILTIN_STUDENT_NAME,
    BUILTIN_STUDENT_SOURCE,
    load_encoder,
)
from stratum.errors import ModelNotFound
from stratum.registry.checksum import directory_checksum
from stratum.registry.service import RegistryService
from stratum.settings import Settings

log = logging.getLogger(__name__)


def register_builtin_models(settings: Settings, registry: RegistryService) -> list[str]:
    """Make sure the built-in models exist in the registry; return the names to preload."""
    preload: list[str] = []
    if settings.demo_model:
        # Imported here: the training code is only needed when the demo is on.
        from stratum.engine.demo import DEMO_MODEL_NAME, ensure_demo_model

        path = ensure_demo_model(settings.home, progress=lambda step: log.info("demo model: %s", step))
        if _latest_checksum(registry, DEMO_MODEL_NAME) != directory_checksum(path):
            registry.add_model(
                name=DEMO_MODEL_NAME,
                source="demo",
                path=str(path),
                description="DEMO: a toy Llama trained for seconds on a tiny bundled corpus; "
                "not a real assistant.",
            )
        preload.append(DEMO_MODEL_NAME)
    if settings.embeddings_model:
        for name, source, description in _BUILTIN_ENCODERS:
            try:
                registry.get_model(name)
            except ModelNotFound:
                registry.add_model(
                    name=name,
                    kind="embedding",
                    source="encoder",
                    path=source,
                    metadata=_encoder_metadata(load_encoder(source)),
                    description=description,
                )
        # The students load on first use (a KB configured with it); the full model serves
        # /v1/embeddings and the semantic cache by default.
        preload.append(BUILTIN_ENCODER_NAME)
    return preload


_BUILTIN_ENCODERS = (
    (
        BUILTIN_ENCODER_NAME,
        BUILTIN_ENCODER_SOURCE,
        "Multilingual (Chinese + English) e5-small sentence encoder, bundled weights.",
    ),
    (
        BUILTIN_STUDENT_NAME,
        BUILTIN_STUDENT_SOURCE,
        "Six-layer student of multilingual-e5-small, distilled towards it: about twice the "
        "embedding speed, its own vector space.",
    ),
    (
        BUILTIN_STUDENT_4L_NAME,
        BUILTIN_STUDENT_4L_SOURCE,
        "Four-layer student of multilingual-e5-small, distilled towards it token by token: about "
        "three times the embedding speed, its own vector space.",
    ),
)


def _latest_checksum(registry: RegistryService, name: str) -> str | None:
    try:
        latest = registry.get_model(name).latest
    except ModelNotFound:
        return None
    return latest.checksum if latest else None


def _encoder_metadata(encoder: Encoder) -> dict[str, object]:
    info = encoder.info
    return {
        "architecture": info.architecture,
        "dimensions": encoder.dimensions,
        "context_length": info.context_length,
        "tokenizer": info.tokenizer,
        **info.extra,
    }
