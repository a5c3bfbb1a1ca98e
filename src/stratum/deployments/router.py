"""Which version serves one request for a deployed name.

The routing table is read from the store at most once a second (``ttl``), so a rollback decided by
any gateway's controller, or a change from the CLI, reaches every gateway within about a second.

A/B assignment is sticky: the arm is a function of sha256(name, user or key), so one user stays on
one arm across requests and gateways, and changing the split moves as few users as possible
(arms cover consecutive buckets of 0..9999). A canary is not sticky: each request draws its arm with
the canary's weights, which makes the candidate's share of traffic exact for every key.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stratum.deployments.schemas import DeploymentPublic

# Buckets of the sticky hash: 0.01 % resolution for the split.
_BUCKETS = 10_000


@dataclass(frozen=True)
class Route:
    ref: str
    deployment: str


def sticky_bucket(name: str, subject: str) -> int:
    digest = hashlib.sha256(f"{name}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def pick(deployment: DeploymentPublic, *, subject: str | None, rng: random.Random) -> str:
    """The ref serving one request: sticky for A/B (by ``subject``), weighted draw otherwise."""
    arms = [(ref, weight) for ref, weight in deployment.weights.items() if weight > 0]
    if len(arms) == 1:
        return arms[0][0]
    if deployment.mode == "ab" and subject is not None:
        point = sticky_bucket(deployment.name, subject) / _BUCKETS * 100
    else:
        point = rng.random() * 100
    total = 0.0
    for ref, weight in arms:
        total += weight
        if point < total:
            return ref
    return arms[-1][0]


class DeploymentRouter:
    """Serves: the gateway's inference routes (``route``), with the table refreshed by ``refresh``."""

    def __init__(
        self, load: Callable[[], dict[str, DeploymentPublic]], *, ttl: float = 1.0, seed: int | None = None
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._table: dict[str, DeploymentPublic] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    @property
    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self._ttl

    def refresh(self) -> None:
        """Reload the table (blocking: the gateway calls it in a worker thread when ``stale``)."""
        table = self._load()
        with self._lock:
            self._table, self._loaded_at = table, time.monotonic()

    def route(self, model: str, *, subject: str | None) -> Route | None:
        """The deployment's choice for a bare ``model`` name, or None (not deployed, or a pinned ref)."""
        if "@" in model or ":" in model:
            return None  # NAME@V and NAME:alias ask for one exact version
        deployment = self._table.get(model)
        if deployment is None:
            return None
        return Route(ref=pick(deployment, subject=subject, rng=self._rng), deployment=model)
