"""``/v1/completions`` wire types (legacy text completions)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from stratum.protocol.base import ResponseModel, Usage
from stratum.protocol.chat import SamplingFields


class CompletionRequest(SamplingFields):
    # A string or a batch of strings; token-id prompts are refused with a clear error by the route.
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _non_empty_batch(cls, value: object) -> object:
        # An empty batch would answer 200 with no choices; a client never means that.
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value

    suffix: str | None = None


class CompletionChoice(ResponseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(ResponseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
