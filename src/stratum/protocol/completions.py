"""``/v1/completions`` wire types (legacy text completions)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stratum.protocol.base import ResponseModel, Usage
from stratum.protocol.chat import SamplingFields


class CompletionRequest(SamplingFields):
    # A string or a batch of strings; token-id prompts are refused with a clear error by the route.
    prompt: str | list[str] | list[int] | list[list[int]] = Field(...)
    echo: bool = False
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
