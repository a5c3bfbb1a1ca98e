"""``ResponseCache``: look up and store whole responses of deterministic requests.

Exact hits come from the store (local LRU or Redis). The optional semantic cache keeps, per
(tenant scope, model version, everything but the last user message), the embeddings of the last
user messages it has answered; a new request whose embedding has cosine similarity ≥ the threshold
with one of them gets that answer. Its index is in-process (entries themselves live in the store,
so TTL and invalidation apply to both). Scopes are tenants (project, or key without a project):
neither cache ever answers one tenant with another tenant's response.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from stratum.cache.keys import cache_key
from stratum.cache.store import CacheStore

log = logging.getLogger(__name__)

# Last-user-message embeddings kept per semantic scope (oldest dropped first).
_SEMANTIC_PER_SCOPE = 2000


@dataclass
class CachedChoice:
    index: int
    text: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CachedResponse:
    version: str
    choices: list[CachedChoice]
    prompt_tokens: int
    completion_tokens: int
    hit: Literal["exact", "semantic"] = "exact"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CachedResponse:
        data = json.loads(raw)
        data["choices"] = [CachedChoice(**c) for c in data["choices"]]
        return cls(**data)


Encode = Callable[[str], np.ndarray]


class ResponseCache:
    """Serves: the chat route (``lookup``/``put``) and ``DELETE /admin/v1/cache`` (``invalidate``)."""

    def __init__(
        self,
        store: CacheStore,
        *,
        ttl_s: float,
        semantic_threshold: float | None = None,
        encode: Encode | None = None,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.semantic_threshold = semantic_threshold if encode is not None else None
        self._encode = encode
        self._vectors: dict[tuple[str, str, str, str], deque[tuple[np.ndarray, str]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(scope: str, model: str, version: str, request: dict[str, Any]) -> str:
        return f"{scope}|{model}|{cache_key(scope=scope, version=version, request=request)}"

    def lookup(
        self, *, scope: str, model: str, version: str, request: dict[str, Any]
    ) -> CachedResponse | None:
        """The cached response (blocking: the semantic path encodes text; run in a thread)."""
        raw = self.store.get(self._key(scope, model, version, request))
        if raw is not None:
            return CachedResponse.from_bytes(raw)
        if self.semantic_threshold is None:
            return None
        question, context = _split(request)
        if not question:
            return None
        with self._lock:
            entries = list(self._vectors.get((scope, model, version, context), ()))
        if not entries:
            return None
        vector = self._embed(question)
        if vector is None:
            return None
        matrix = np.stack([v for v, _ in entries])
        scores = matrix @ vector
        best = int(np.argmax(scores))
        if float(scores[best]) < self.semantic_threshold:
            return None
        raw = self.store.get(entries[best][1])
        if raw is None:  # expired or invalidated
            return None
        found = CachedResponse.from_bytes(raw)
        found.hit = "semantic"
        return found

    def put(
        self, *, scope: str, model: str, version: str, request: dict[str, Any], response: CachedResponse
    ) -> None:
        key = self._key(scope, model, version, request)
        self.store.set(key, response.to_bytes(), ttl_s=self.ttl_s)
        if self.semantic_threshold is None:
            return
        question, context = _split(request)
        if not question:
            return
        vector = self._embed(question)
        if vector is None:
            return
        with self._lock:
            bucket = self._vectors.setdefault(
                (scope, model, version, context), deque(maxlen=_SEMANTIC_PER_SCOPE)
            )
            bucket.append((vector, key))

    def invalidate(self, model: str | None = None) -> int:
        """Drop every entry (of ``model``, when given); returns how many the store dropped."""
        with self._lock:
            for scope in [s for s in self._vectors if model is None or s[1] == model]:
                del self._vectors[scope]
        return self.store.drop(contains=None if model is None else f"|{model}|")

    def _embed(self, text: str) -> np.ndarray | None:
        """The unit vector of ``text``; None (the semantic path is skipped) if the encoder fails:
        a cache must never turn a servable request into an error."""
        assert self._encode is not None
        try:
            raw = self._encode(text)
        except Exception:
            log.warning("semantic cache: the encoder failed; exact cache only", exc_info=True)
            return None
        vector = np.asarray(raw, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


def _split(request: dict[str, Any]) -> tuple[str, str]:
    """(last user message text, canonical JSON of everything else): similarity looks at the first
    only; the second must match exactly (same system prompt, history and parameters)."""
    messages = list(request.get("messages") or [])
    question = ""
    for position in range(len(messages) - 1, -1, -1):
        if messages[position].get("role") == "user" and isinstance(messages[position].get("content"), str):
            question = messages.pop(position)["content"]
            break
    rest = {**request, "messages": messages}
    return question, json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
