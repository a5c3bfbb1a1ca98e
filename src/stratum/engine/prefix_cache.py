"""Prefix reuse: KV blocks of prompts already seen, so a shared system prompt is prefilled once.

The design is vLLM's automatic prefix caching, adapted to per-sequence KV stores:

- A prompt is cut into blocks of ``BLOCK_TOKENS`` tokens. Block ``i`` is keyed by a hash chained
  over the adapter name and every token up to the end of block ``i`` (``parent digest + block
  tokens``), so a key names the whole prefix, never a block out of context.
- When a sequence is admitted, the longest run of cached blocks at the head of its prompt is copied
  into its own KV store and its prefill starts after them. At least one prompt token is always left
  to prefill: its logits give the first generated token.
- When a sequence's prefill completes, the full blocks of its prompt not yet cached are copied in.
- Keys include the LoRA adapter (an adapter changes every key and value), and the cache lives in
  one engine (one base model), so nothing is ever shared across models or adapters. Installing or
  removing an adapter drops its blocks (a name reloaded with other weights must not hit).
- Memory: the cache holds at most ``max_tokens`` tokens, and together with the running sequences'
  reservations never more than the engine's KV budget: admission evicts cached blocks before a
  sequence has to wait. Eviction is LRU; a lookup touches a chain's blocks from the last to the
  first, so a chain's tail goes before its head (the head is what other prompts share).

Reused KV was computed in another round, in a batch of other rows; the matrix multiplies may then
round differently (see ``batching``), by the same bound as batched vs unbatched decoding.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stratum.engine.kv import SequenceKV

BLOCK_TOKENS = 16


@dataclass
class _Block:
    adapter: str | None
    kv: torch.Tensor  # [layers, 2, kv_heads, BLOCK_TOKENS, head_dim], owned by the cache


@dataclass
class PrefixStats:
    lookups: int = 0  # sequences admitted while the cache was on
    hits: int = 0  # of which reused at least one block
    tokens_reused: int = 0  # prompt tokens not prefilled thanks to the cache
    tokens_inserted: int = 0
    evicted_tokens: int = 0


def block_keys(adapter: str | None, prompt_ids: Sequence[int], block: int = BLOCK_TOKENS) -> list[bytes]:
    """The chained digest of every full block of ``prompt_ids`` (the key of the prefix up to it)."""
    keys: list[bytes] = []
    parent = hashlib.sha256(b"stratum-prefix\0" + (adapter or "").encode() + b"\0").digest()
    for start in range(0, len(prompt_ids) - block + 1, block):
        tokens = array("q", prompt_ids[start : start + block]).tobytes()
        parent = hashlib.sha256(parent + tokens).digest()
        keys.append(parent)
    return keys


class PrefixCache:
    """Cached KV blocks of one engine; used by its scheduler thread only (adapter changes excepted,
    which the engine makes while the scheduler is parked)."""

    def __init__(self, max_tokens: int, *, block: int = BLOCK_TOKENS) -> None:
        if block < 1:
            raise ValueError("a prefix-cache block holds at least one token")
        self.block = block
        self.max_tokens = max_tokens
        self.stats = PrefixStats()
        self._blocks: OrderedDict[bytes, _Block] = OrderedDict()

    @property
    def tokens(self) -> int:
        return len(self._blocks) * self.block

    def keys(self, adapter: str | None, prompt_ids: Sequence[int]) -> list[bytes]:
        return block_keys(adapter, prompt_ids, self.block)

    def reuse(self, keys: Sequence[bytes], prompt_tokens: int, kv: SequenceKV) -> int:
        """Copy the longest cached head of the prompt into ``kv``; the number of tokens reused."""
        self.stats.lookups += 1
        usable = min(len(keys), (prompt_tokens - 1) // self.block)  # one token left to prefill
        found: list[_Block] = []
        for key in keys[:usable]:
            entry = self._blocks.get(key)
            if entry is None:
                break
            found.append(entry)
        for key in reversed(keys[: len(found)]):  # tail least recent: evicted before the head
            self._blocks.move_to_end(key)
        if not found:
            return 0
        kv.load_prefix(torch.cat([entry.kv for entry in found], dim=3))
        reused = len(found) * self.block
        self.stats.hits += 1
        self.stats.tokens_reused += reused
        return reused

    def insert(self, adapter: str | None, keys: Sequence[bytes], kv: SequenceKV, *, room: int | None) -> None:
        """Cache the full blocks of a prefilled prompt held in ``kv``; keep within ``room`` tokens."""
        for index, key in enumerate(keys):
            if key in self._blocks:
                continue
            start = index * self.block
            self._blocks[key] = _Block(adapter, kv.snapshot(start, start + self.block))
            self.stats.tokens_inserted += self.block
        # Same recency rule as a lookup: this prompt's head is the most recently used.
        for key in reversed(keys):
            if key in self._blocks:
                self._blocks.move_to_end(key)
        self.trim(self.max_tokens if room is None else min(self.max_tokens, room))

    def trim(self, limit: int) -> None:
        """Evict least recently used blocks until the cache holds at most ``limit`` tokens."""
        while self._blocks and self.tokens > max(0, limit):
            self._blocks.popitem(last=False)
            self.stats.evicted_tokens += self.block

    def drop_adapter(self, adapter: str) -> None:
        for key in [k for k, entry in self._blocks.items() if entry.adapter == adapter]:
            del self._blocks[key]
            self.stats.evicted_tokens += self.block

    def clear(self) -> None:
        self._blocks.clear()
