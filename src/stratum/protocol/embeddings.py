"""``/v1/embeddings`` wire types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stratum.protocol.base import ResponseModel, Usage, WireModel


class EmbeddingRequest(WireModel):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    # Stratum extra: e5-style encoders embed queries and passages differently.
    input_type: Literal["query", "passage"] = "passage"


class Embedding(ResponseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
