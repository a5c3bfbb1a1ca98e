"""Public registry types: what the API, CLI and other domains see (never the ORM rows)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from stratum.errors import InvalidRequest, ModelNotFound

ModelKind = Literal["chat", "embedding"]
ModelSource = Literal["local", "upstream", "demo", "encoder"]
ModelVariant = Literal["full", "adapter", "merged", "quantized"]

MODEL_KINDS: tuple[ModelKind, ...] = ("chat", "embedding")
MODEL_SOURCES: tuple[ModelSource, ...] = ("local", "upstream", "demo", "encoder")

# The implicit alias: always the highest version, never stored.
LATEST = "latest"
# '@' and ':' are excluded: they separate the version and the alias in a ref ("demo@2", "demo:prod").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
# Aliases start with a letter so they can never be mistaken for a version number.
ALIAS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


def parse_ref(ref: str) -> tuple[str, int | str | None]:
    """Split ``NAME``, ``NAME@VERSION`` or ``NAME:ALIAS`` into (name, version number | alias | None)."""
    if "@" in ref:
        name, _, version = ref.partition("@")
        # Versions are database integers: anything past int32 cannot exist (and would overflow SQLite).
        if not (version.isascii() and version.isdigit()) or not 1 <= int(version) < 2**31:
            raise ModelNotFound(
                f"The model '{ref}' does not exist: a version must be a positive integer, as in '{name}@1'.",
                param="model",
            )
        return name, int(version)
    if ":" in ref:
        name, _, alias = ref.partition(":")
        return name, alias
    return ref, None


def validate_name(name: str) -> None:
    if "@" in name or ":" in name:
        raise InvalidRequest(
            f"Invalid model name {name!r}: '@' and ':' are reserved for refs (name@version, name:alias).",
            param="name",
        )
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"Invalid model name {name!r}: use 1-128 letters, digits, '.', '_', '/' or '-', "
            "starting with a letter or digit.",
            param="name",
        )


def validate_alias(alias: str) -> None:
    if alias == LATEST:
        raise InvalidRequest("'latest' always means the highest version and cannot be set.", param="alias")
    if not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidRequest(
            f"Invalid alias {alias!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter.",
            param="alias",
        )


class ModelVersionPublic(BaseModel):
    """One version of a model, addressed by ``ref`` (``name@version``)."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    version: int
    kind: ModelKind
    source: ModelSource
    variant: ModelVariant = "full"
    base_version_id: int | None = None
    artifact_uri: str | None = None
    checksum: str | None = Field(default=None, description="sha256 of the artifact directory.")
    upstream_url: str | None = None
    upstream_model: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the upstream key (the key is never stored)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: str
    created_at: datetime
    aliases: list[str] = Field(
        default_factory=list, description="Aliases serving this version, including the implicit 'latest'."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ref(self) -> str:
        """Stable reference: this exact version, whatever aliases move later."""
        return f"{self.name}@{self.version}"


class ModelPublic(BaseModel):
    """A model with all its versions (ascending) and aliases."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    kind: ModelKind
    description: str | None = None
    default_alias: str = LATEST
    created_at: datetime
    versions: list[ModelVersionPublic] = Field(default_factory=list)
    aliases: dict[str, int] = Field(
        default_factory=dict, description="Alias → version number, including the implicit 'latest'."
    )

    @property
    def latest(self) -> ModelVersionPublic | None:
        return self.versions[-1] if self.versions else None


class AliasEventPublic(BaseModel):
    """One alias move. ``to_version`` None: the alias was removed."""

    model_config = ConfigDict(frozen=True)

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime
