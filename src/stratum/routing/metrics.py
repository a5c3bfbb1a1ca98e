"""Per-backend metrics on the gateway's Prometheus registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RoutingMetrics:
    """Requests, errors, first-token latency, circuit state, bursts, fallbacks and cache lookups."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "stratum_backend_requests", "Requests sent to a backend", ["backend"], registry=registry
        )
        self.errors = Counter(
            "stratum_backend_errors",
            "Backend attempts that failed, by trigger",
            ["backend", "trigger"],
            registry=registry,
        )
        self.latency = Histogram(
            "stratum_backend_first_token_seconds",
            "Time from sending to a backend to its first chunk",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.circuit = Gauge(
            "stratum_backend_circuit_state",
            "Circuit state per backend: 0 closed, 1 half-open, 2 open",
            ["backend"],
            registry=registry,
        )
        self.healthy = Gauge(
            "stratum_backend_healthy",
            "Last health check passed (1) or failed (0)",
            ["backend"],
            registry=registry,
        )
        self.bursts = Counter(
            "stratum_route_bursts",
            "Requests sent past a busy local backend to the next priority",
            ["model", "backend"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "stratum_fallbacks", "Requests answered by a fallback link", ["model", "link"], registry=registry
        )
        self.cache = Counter("stratum_cache_lookups", "Response cache lookups", ["result"], registry=registry)
