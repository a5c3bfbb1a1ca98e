"""The engine contract: submit a generation request, get an async stream of text deltas.

Every backend (embedded torch engine, OpenAI-compatible upstream, fake engine for tests) implements
``TextEngine``; every sentence encoder implements ``Encoder``. The gateway only sees these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

# "tool_calls" and "content_filter" come from upstreams; the embedded engine says "stop" or "length".
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy decoding."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate. Exactly one of ``messages`` (chat) or ``prompt`` (completion) is set."""

    request_id: str
    params: SamplingParams
    messages: Sequence[dict[str, Any]] | None = None
    prompt: str | None = None
    # Fields an upstream understands but the embedded engine ignores (tools, response_format, …).
    passthrough: dict[str, Any] = field(default_factory=dict)
    # Seconds from submission after which the engine stops the sequence.
    deadline_s: float | None = None
    # A LoRA adapter loaded on the engine (``LocalEngine.load_adapter``); None: the base model.
    adapter: str | None = None


@dataclass(frozen=True)
class GenerationChunk:
    """A text delta. The last chunk of a stream has ``finish_reason`` set and final token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    # Tool-call deltas in OpenAI's shape, passed through from upstreams that produce them.
    tool_calls: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the engine knows about the model it serves (shown by /v1/models and the CLI)."""

    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    tokenizer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TextEngine(Protocol):
    """A generative model behind one served name."""

    info: ModelInfo

    async def start(self) -> None:
        """Load weights / open connections. Called once before the first request."""

    async def close(self) -> None:
        """Cancel running sequences and release memory/connections."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the generation. Raises ``Overloaded`` before the first chunk when saturated.

        Closing the iterator early (client disconnect) cancels the sequence and frees its slot.
        """
        ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        """Tokens the prompt will take, if this engine can tell before running (quotas need it)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Sequences waiting for a slot (for metrics, routing and 503 decisions)."""
        ...


EncodeKind = Literal["query", "passage"]


@runtime_checkable
class Encoder(Protocol):
    """A sentence-embedding model. ``encode`` is CPU-bound: callers run it in a worker thread."""

    dimensions: int
    info: ModelInfo

    def encode(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> np.ndarray:
        """Return a float32 array of shape (len(texts), dimensions), L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> list[int]:
        """Tokens each text takes in this encoder's tokenizer, prefixes included (for usage)."""
        ...
