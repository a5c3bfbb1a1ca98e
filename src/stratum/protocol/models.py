"""``/v1/models`` wire types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from stratum.protocol.base import ResponseModel


class ModelCard(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "stratum"
    # Stratum extras: what kind of model and which version the bare name resolves to.
    kind: str = "chat"
    version: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
