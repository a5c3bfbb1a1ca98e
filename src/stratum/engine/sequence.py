"""A generation in flight: the scheduler's state for it, and the stream its caller reads.

The two live on different threads: the scheduler thread owns ``SequenceState`` and sends text to
the caller's event loop; the caller iterates a ``SequenceStream`` there. The only thing the caller
ever writes back is ``cancelled`` (a bool, so no lock is needed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import torch

from stratum.engine.base import GenerationChunk, GenerationRequest
from stratum.engine.kv import SequenceKV
from stratum.engine.sampling import StopScanner

# What a sequence's stream carries: text deltas, then possibly the error that ends it.
StreamItem = GenerationChunk | Exception


@dataclass(eq=False)
class SequenceState:
    request: GenerationRequest
    prompt_ids: list[int]
    max_new_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[StreamItem]
    deadline: float | None
    generator: torch.Generator
    stops: StopScanner
    cancelled: bool = False
    kv: SequenceKV | None = None
    prefilled: int = 0  # prompt tokens already in the KV cache
    prefix_keys: list[bytes] | None = None  # the prompt's block keys in the prefix cache
    generated: list[int] = field(default_factory=list)
    emitted: int = 0

    @property
    def kv_tokens(self) -> int:
        """The most KV memory this sequence can ever need, in tokens (what it reserves)."""
        return len(self.prompt_ids) + self.max_new_tokens

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline

    def push(self, item: StreamItem) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone
            self.cancelled = True


class SequenceStream:
    """The caller's view of a sequence. Closing it, even before the first read, cancels the sequence."""

    def __init__(self, seq: SequenceState) -> None:
        self._seq = seq
        self._done = False

    def __aiter__(self) -> SequenceStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._seq.queue.get()
        except BaseException:  # cancelled while waiting: the client is gone
            await self.aclose()
            raise
        if isinstance(item, Exception):
            await self.aclose()
            raise item
        if item.finish_reason is not None:
            await self.aclose()
        return item

    async def aclose(self) -> None:
        self._done = True
        # The scheduler drops a cancelled sequence at its next round, freeing the slot and KV cache.
        self._seq.cancelled = True


def deliver(outbox: list[tuple[SequenceState, StreamItem]]) -> None:
    """Hand a round's chunks to their event loops: one wake-up per loop, not one per sequence.

    Waking an event loop from another thread writes to its self-pipe (a syscall that also contends
    for the GIL); per sequence per token, that cost a third of a round on the demo model.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[SequenceState, StreamItem]]] = {}
    for seq, item in outbox:
        by_loop.setdefault(seq.loop, []).append((seq, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the clients' event loop is gone
            for seq, _ in items:
                seq.cancelled = True


def _put_all(items: list[tuple[SequenceState, StreamItem]]) -> None:
    for seq, item in items:
        seq.queue.put_nowait(item)
