"""The model cache's bookkeeping: what is loaded, its size, how popular it is, what to evict.

A memory budget (``STRATUM_MODEL_CACHE_BYTES``) bounds the weights held by loaded engines and LoRA
adapters together. Loading something that does not fit evicts idle entries, least valuable first:

    value = last_used + HIT_WEIGHT_S * log2(1 + hits)

i.e. LRU where popularity buys time: each doubling of an entry's use count counts as if it had
been used ``HIT_WEIGHT_S`` seconds more recently. A model that served 1,000 requests an hour ago
outlives one tried once a minute ago; one used 3 times is not protected by that forever.

Never evicted: pinned entries (``STRATUM_PINNED_MODELS`` or registry metadata ``pinned: true``)
and busy ones (sequences running or waiting). Evicting a base model takes its adapters with it.
When nothing can go, the load is refused with 503 + Retry-After instead of running out of memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from stratum.registry.schemas import ModelVersionPublic

# Seconds of recency one doubling of an entry's use count is worth (see the module docstring).
HIT_WEIGHT_S = 60.0

EntryKind = Literal["model", "adapter"]


@dataclass(eq=False)
class CacheEntry:
    """One loaded model engine or adapter."""

    key: str
    kind: EntryKind
    version: ModelVersionPublic
    engine: Any
    nbytes: int
    pinned: bool = False
    base_key: str | None = None  # adapters: the entry of the engine they are loaded on
    hits: int = 0
    last_used: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.hits += 1
        self.last_used = time.monotonic()

    @property
    def value(self) -> float:
        return self.last_used + HIT_WEIGHT_S * math.log2(1 + self.hits)

    def busy(self) -> bool:
        """Whether a sequence runs or waits on it (then it must stay)."""
        if self.kind == "adapter":
            in_use = getattr(self.engine, "adapter_in_use", None)
            return bool(in_use(self.key)) if in_use is not None else False
        return bool(getattr(self.engine, "running", 0) or getattr(self.engine, "queue_depth", 0))


class CacheLedger:
    """Entries by key, bytes in use, and the choice of victims (no I/O: the pool does the unloading)."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.entries: dict[str, CacheEntry] = {}

    @property
    def used(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def dependants(self, key: str) -> list[CacheEntry]:
        return [e for e in self.entries.values() if e.base_key == key]

    def fits(self, nbytes: int) -> bool:
        return self.budget is None or self.used + nbytes <= self.budget

    def victims(self, nbytes: int, *, keep: set[str]) -> list[CacheEntry] | None:
        """Entries to evict, in order, so that ``nbytes`` more fit; None if that is impossible now.

        ``keep``: keys that must stay (e.g. the base an adapter is being loaded onto).
        """
        if self.budget is None:
            return []
        chosen: list[CacheEntry] = []
        freed = 0
        excess = self.used + nbytes - self.budget
        for entry in sorted(self.entries.values(), key=lambda e: e.value):
            if excess - freed <= 0:
                break
            group = [entry, *self.dependants(entry.key)]
            if entry in chosen or entry.key in keep or any(e.pinned or e.busy() for e in group):
                continue
            # An engine evicted with its adapters frees all of them.
            fresh = [e for e in group if e not in chosen]
            chosen.extend(fresh)
            freed += sum(e.nbytes for e in fresh if e.nbytes)
        return chosen if excess - freed <= 0 else None
