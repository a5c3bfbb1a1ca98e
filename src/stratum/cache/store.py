"""Where cached responses live: an in-process LRU with TTL (default) or Redis (shared).

Keys are ``{namespace}|{hash}`` where the namespace is ``{scope}|{model}``, so one model's (or one
tenant's) entries can be dropped without touching the others.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

REDIS_INSTALL_HINT = "pip install 'stratum[redis]'"
_REDIS_PREFIX = "stratum:cache:"


class CacheStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, *, ttl_s: float) -> None: ...

    def drop(self, *, contains: str | None = None) -> int:
        """Delete entries whose key contains ``contains`` (all when None); returns how many."""
        ...


class LocalStore:
    """An LRU of ``max_entries`` with a TTL per entry, safe across threads."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def set(self, key: str, value: bytes, *, ttl_s: float) -> None:
        with self._lock:
            self._items[key] = (self._clock() + ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def drop(self, *, contains: str | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._items if contains is None or contains in k]
            for key in doomed:
                del self._items[key]
            return len(doomed)

    def __len__(self) -> int:
        return len(self._items)


class RedisStore:
    """Entries in Redis with ``EX`` TTLs, shared by every gateway on the same Redis."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        if client is None:
            try:
                import redis
            except ImportError as exc:
                raise ImportError(f"the Redis cache needs the redis client: {REDIS_INSTALL_HINT}") from exc
            client = redis.Redis.from_url(url)
        self._redis = client

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(_REDIS_PREFIX + key)
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes, *, ttl_s: float) -> None:
        self._redis.set(_REDIS_PREFIX + key, value, px=max(1, int(ttl_s * 1000)))

    def drop(self, *, contains: str | None = None) -> int:
        pattern = _REDIS_PREFIX + ("*" if contains is None else f"*{_glob_escape(contains)}*")
        doomed = list(self._redis.scan_iter(match=pattern, count=500))
        if doomed:
            self._redis.delete(*doomed)
        return len(doomed)

    def close(self) -> None:
        self._redis.close()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
