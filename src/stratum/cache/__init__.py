"""The response cache: exact (hash of version + normalised request) and optional semantic."""

from stratum.cache.keys import cache_key, is_deterministic, normalise_request
from stratum.cache.service import CachedChoice, CachedResponse, ResponseCache
from stratum.cache.store import CacheStore, LocalStore, RedisStore

__all__ = [
    "CacheStore",
    "CachedChoice",
    "CachedResponse",
    "LocalStore",
    "RedisStore",
    "ResponseCache",
    "cache_key",
    "is_deterministic",
    "normalise_request",
]
