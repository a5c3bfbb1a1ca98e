"""Running the ``n`` choices of one request on an engine, collected or streamed, with metrics.

Shared by chat and text completions: both submit ``n`` sequences (seeds ``seed + i`` so choices
differ but stay reproducible) and either wait for all of them or interleave their deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from stratum.engine.base import GenerationChunk, GenerationRequest, SamplingParams, TextEngine
from stratum.gateway.metrics import Metrics
from stratum.protocol.base import Usage
from stratum.protocol.chat import SamplingFields


def sampling_params(body: SamplingFields, *, max_tokens: int | None, choice: int) -> SamplingParams:
    seed = None if body.seed is None else body.seed + choice
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_list(),
        seed=seed,
    )


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def merge_tool_calls(into: list[dict[str, Any]], deltas: tuple[dict[str, Any], ...]) -> None:
    """Fold streamed tool-call deltas (keyed by index) into complete calls."""
    for delta in deltas:
        index = int(delta.get("index", len(into)))
        while len(into) <= index:
            into.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call = into[index]
        call["id"] = delta.get("id") or call["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


class Generation:
    """The ``n`` sequences of one request. Submit with ``start()``; then ``collect()`` or ``stream()``."""

    def __init__(
        self,
        engine: TextEngine,
        requests: list[GenerationRequest],
        *,
        model: str,
        metrics: Metrics,
        prompt_of: list[int] | None = None,
    ):
        self.engine = engine
        self.requests = requests
        self.model = model
        self.metrics = metrics
        # Which prompt each sequence continues: a prompt's tokens count once, however many choices.
        self.prompt_of = prompt_of or [0] * len(requests)
        self.started = time.perf_counter()
        self.choices = [ChoiceResult(index=i) for i in range(len(requests))]
        self._streams: list[AsyncIterator[GenerationChunk]] = []
        self._first_token_seen = False
        # Called once with (prompt, completion) tokens when the generation ends, however it ends.
        self.on_finish: Callable[[int, int], None] | None = None

    def start(self) -> None:
        """Admit every sequence now, so saturation or a too-long prompt fails before any byte is sent."""
        try:
            for request in self.requests:
                self._streams.append(self.engine.generate(request))
        except BaseException:
            for stream in self._streams:
                _close_soon(stream)
            raise

    async def prime(self, timeout_s: float | None = None) -> None:
        """Wait for every sequence's first chunk before the response starts.

        A backend that fails or stalls before its first token can then still be replaced (routing
        and fallback chains); the chunks read here are replayed by ``collect``/``stream``. On any
        failure (``TimeoutError`` after ``timeout_s``) every sequence is closed.
        """
        primed: list[AsyncIterator[GenerationChunk]] = []
        try:
            async with asyncio.timeout(timeout_s):
                for stream in self._streams:
                    try:
                        first: GenerationChunk | None = await anext(stream)
                    except StopAsyncIteration:
                        first = None
                    primed.append(_replaying(first, stream))
        except BaseException:
            for stream in self._streams:
                await _close(stream)
            raise
        self._streams = primed

    async def close(self) -> None:
        """Close every sequence (idempotent): for a response abandoned before streaming began."""
        for stream in self._streams:
            await _close(stream)

    @property
    def prompt_tokens(self) -> int:
        per_prompt: dict[int, int] = {}
        for choice, prompt in zip(self.choices, self.prompt_of, strict=True):
            per_prompt[prompt] = max(per_prompt.get(prompt, 0), choice.prompt_tokens)
        return sum(per_prompt.values())

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    def usage(self) -> Usage:
        prompt, completion = self.prompt_tokens, self.completion_tokens
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def _record(self, index: int, chunk: GenerationChunk) -> None:
        if not self._first_token_seen and (chunk.text or chunk.tool_calls):
            self._first_token_seen = True
            self.metrics.ttft.labels(self.model).observe(time.perf_counter() - self.started)
        choice = self.choices[index]
        choice.text += chunk.text
        choice.completion_tokens = chunk.completion_tokens
        choice.prompt_tokens = max(choice.prompt_tokens, chunk.prompt_tokens)
        if chunk.tool_calls:
            merge_tool_calls(choice.tool_calls, chunk.tool_calls)
        if chunk.finish_reason:
            choice.finish_reason = chunk.finish_reason

    async def collect(self) -> list[ChoiceResult]:
        async def drain(index: int, stream: AsyncIterator[GenerationChunk]) -> None:
            async for chunk in stream:
                self._record(index, chunk)

        try:
            async with asyncio.TaskGroup() as group:
                for index, stream in enumerate(self._streams):
                    group.create_task(drain(index, stream))
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        finally:
            self._finish()
        return self.choices

    async def stream(self) -> AsyncIterator[tuple[int, GenerationChunk]]:
        """Yield ``(choice index, chunk)`` as any sequence produces text; closing cancels all."""
        if len(self._streams) == 1:
            try:
                async for chunk in self._streams[0]:
                    self._record(0, chunk)
                    yield 0, chunk
            finally:
                await _close(self._streams[0])
                self._finish()
            return
        queue: asyncio.Queue[tuple[int, GenerationChunk | BaseException | None]] = asyncio.Queue()

        async def pump(index: int, stream: AsyncIterator[GenerationChunk]) -> None:
            try:
                async for chunk in stream:
                    await queue.put((index, chunk))
                await queue.put((index, None))
            except Exception as exc:
                await queue.put((index, exc))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(self._streams)]
        try:
            remaining = len(tasks)
            while remaining:
                index, item = await queue.get()
                if item is None:
                    remaining -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                self._record(index, item)
                yield index, item
        finally:
            for task in tasks:
                task.cancel()
            for stream in self._streams:
                await _close(stream)
            self._finish()

    def _finish(self) -> None:
        self.metrics.count_tokens(
            model=self.model, prompt=self.prompt_tokens, completion=self.completion_tokens
        )
        if self.on_finish is not None:
            self.on_finish(self.prompt_tokens, self.completion_tokens)


class _replaying:
    """The primed first chunk, then the rest of the stream; closing closes the underlying stream
    even if iteration never started (an unstarted async generator would skip its ``finally``)."""

    def __init__(self, first: GenerationChunk | None, rest: AsyncIterator[GenerationChunk]) -> None:
        self._first, self._rest = first, rest

    def __aiter__(self) -> _replaying:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        await _close(self._rest)


async def _close(stream: AsyncIterator[GenerationChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _close_soon(stream: AsyncIterator[GenerationChunk]) -> None:
    """Close a stream that never started (its engine must drop the queued sequence)."""
    task = asyncio.get_running_loop().create_task(_close(stream))
    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
