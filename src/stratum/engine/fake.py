"""A deterministic engine for gateway tests: replays queued replies, one character per token."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from stratum.engine.base import FinishReason, GenerationChunk, GenerationRequest, ModelInfo
from stratum.engine.sampling import StopScanner
from stratum.errors import Overloaded


class FakeEngine:
    """Answers with queued replies (or echoes the last user message), honouring max_tokens and stop.

    ``delay_s`` sleeps between tokens so tests can disconnect mid-stream or fill the queue.
    """

    def __init__(self, replies: list[str] | None = None, *, delay_s: float = 0.0, max_running: int = 1000):
        self.replies: deque[str] = deque(replies or [])
        self.delay_s = delay_s
        self.max_running = max_running
        self.info = ModelInfo(architecture="FakeEngine", context_length=4096, tokenizer="characters")
        self.running = 0
        self.cancelled = 0
        self.requests: list[GenerationRequest] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def queue_depth(self) -> int:
        return 0

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        if request.messages is not None:
            return sum(len(str(m.get("content") or "")) for m in request.messages)
        return len(request.prompt or "")

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self.running >= self.max_running:
            raise Overloaded("fake engine is full")
        self.requests.append(request)
        if self.replies:
            reply = self.replies.popleft()
        elif request.messages:
            reply = str(request.messages[-1].get("content") or "")
        else:
            reply = request.prompt or ""
        self.running += 1
        return self._stream(request, reply)

    async def _stream(self, request: GenerationRequest, reply: str) -> AsyncIterator[GenerationChunk]:
        prompt_tokens = self.count_prompt_tokens(request) or 0
        limit = request.params.max_tokens or len(reply)
        stop_at = StopScanner(request.params.stop).find(reply, 0) if request.params.stop else None
        text = reply[:stop_at] if stop_at is not None else reply
        finish: FinishReason = "length" if limit < len(text) else "stop"
        text = text[:limit]
        finished = False
        try:
            for i, char in enumerate(text, start=1):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield GenerationChunk(text=char, prompt_tokens=prompt_tokens, completion_tokens=i)
            finished = True
            yield GenerationChunk(
                text="", prompt_tokens=prompt_tokens, completion_tokens=len(text), finish_reason=finish
            )
        finally:
            self.running -= 1
            if not finished:
                self.cancelled += 1
