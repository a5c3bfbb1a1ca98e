"""The encoder a KB embeds with, loaded in this process (CLI, ingest jobs): the bundled e5 or a
registered embedding model. The gateway uses its engine pool instead."""

from __future__ import annotations

from stratum.engine.base import Encoder
from stratum.errors import InvalidRequest
from stratum.storage import Database


def load_kb_encoder(db: Database, name: str) -> Encoder:
    from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, BUILTIN_ENCODERS, load_encoder
    from stratum.registry.service import RegistryService

    if name in BUILTIN_ENCODERS:
        return load_encoder(BUILTIN_ENCODERS[name])
    version = RegistryService(db).resolve(name)
    if version.kind != "embedding":
        raise InvalidRequest(f"{name} is not an embedding model", param="settings.embedding_model")
    return load_encoder(version.artifact_uri or BUILTIN_ENCODER_SOURCE)
