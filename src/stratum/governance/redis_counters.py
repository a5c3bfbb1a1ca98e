"""Quota counters in Redis, shared by every gateway process pointed at the same ``STRATUM_REDIS_URL``.

Each operation is one Lua script, and Redis runs a script with nothing interleaved, so ``reserve``
checks every claim and then applies all of them (or none) atomically, across processes, without
locks. Counters carry their window's end as an absolute expiry (``PEXPIREAT``): minute and month
windows delete themselves, and ``prune`` has nothing to do. One Redis server (or a primary with
replicas) is assumed: the keys of one request are not co-located for Redis Cluster.

redis-py is an extra (``pip install 'stratum[redis]'``), imported when a store is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from stratum.governance.counters import Claim, Refusal

REDIS_INSTALL_HINT = "pip install 'stratum[redis]'"
DEFAULT_PREFIX = "stratum:quota:"
# A shared counter store that does not answer within this many seconds is treated as down (the
# request fails) rather than left hanging with the client.
_SOCKET_TIMEOUT_S = 5.0

# KEYS: the counters; ARGV: amount, limit, expiry in epoch milliseconds for each key in turn.
# Returns 0 when every claim was applied, else {index of the first claim that does not fit, its value}.
_RESERVE = """
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then
    return {i, current}
  end
end
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  else
    redis.call('SET', KEYS[i], ARGV[3 * i - 2])
    -- An expiry already past deletes the key at once, like a finished window in the store.
    redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
  end
end
return 0
"""

# KEYS: the counters; ARGV: a signed delta per key. Missing (expired) counters stay missing:
# INCRBY on them would create a counter without an expiry. INCRBY keeps an existing key's expiry.
_ADJUST = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
return 0
"""


def _redis_module() -> Any:
    try:
        return importlib.import_module("redis")
    except ImportError as exc:
        raise ImportError(
            f"Redis counters (STRATUM_REDIS_URL) need the redis client; install it with: {REDIS_INSTALL_HINT}"
        ) from exc


class RedisCounterStore:
    """Serves: ``QuotaService`` when ``STRATUM_REDIS_URL`` is set (see ``CounterStore``)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        redis = _redis_module()
        # The client holds a thread-safe connection pool; it connects on first use.
        self._client = redis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=_SOCKET_TIMEOUT_S
        )
        self._prefix = prefix
        # EVALSHA, loading the script again if the server lost it (restart, SCRIPT FLUSH).
        self._reserve = self._client.register_script(_RESERVE)
        self._adjust = self._client.register_script(_ADJUST)

    def reserve(self, claims: Sequence[Claim]) -> Refusal | None:
        if not claims:
            return None
        keys = [self._prefix + claim.key for claim in claims]
        args: list[int] = []
        for claim in claims:
            args += [claim.amount, claim.limit, int(claim.expires_at.timestamp() * 1000)]
        result = self._reserve(keys=keys, args=args)
        if result == 0:
            return None
        index, current = result
        return Refusal(claims[int(index) - 1], int(current))

    def adjust(self, deltas: Mapping[str, int]) -> None:
        changes = {key: delta for key, delta in deltas.items() if delta}
        if changes:
            self._adjust(keys=[self._prefix + key for key in changes], args=list(changes.values()))

    def value(self, key: str) -> int:
        return int(self._client.get(self._prefix + key) or 0)

    def prune(self, now: datetime) -> int:
        """Nothing to do: Redis deletes each counter when its window ends (``PEXPIREAT``)."""
        return 0

    def ping(self) -> None:
        """Fail now, at start-up, if Redis is unreachable, rather than on the first request."""
        self._client.ping()

    def close(self) -> None:
        self._client.close()
