"""Prometheus metrics, on a registry owned by the app (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets span a cached reply (~5 ms) to a long CPU generation (~2 min).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10)


class Metrics:
    """Request counts by model/status, latency and time-to-first-token histograms, token counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stratum_requests", "Requests served", ["endpoint", "model", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "stratum_request_duration_seconds",
            "Time from request to last byte",
            ["endpoint", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "stratum_time_to_first_token_seconds",
            "Time from request to the first generated token",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "stratum_tokens", "Tokens processed", ["model", "direction"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "stratum_engine_queue_depth",
            "Sequences waiting for an engine slot",
            ["model"],
            registry=self.registry,
        )
        self.running = Gauge(
            "stratum_engine_running", "Sequences being generated", ["model"], registry=self.registry
        )
        self.kv_tokens = Gauge(
            "stratum_engine_kv_tokens_reserved",
            "KV-cache tokens reserved by running sequences",
            ["model"],
            registry=self.registry,
        )
        # Prefix reuse (engine/prefix_cache.py), cumulative since the model's engine was loaded.
        self.prefix_hits = Gauge(
            "stratum_engine_prefix_cache_hits",
            "Requests whose prompt head was reused from the prefix cache (since load)",
            ["model"],
            registry=self.registry,
        )
        self.prefix_tokens_reused = Gauge(
            "stratum_engine_prefix_cache_tokens_reused",
            "Prompt tokens not prefilled thanks to the prefix cache (since load)",
            ["model"],
            registry=self.registry,
        )
        self.prefix_tokens = Gauge(
            "stratum_engine_prefix_cache_tokens",
            "KV tokens held by the prefix cache",
            ["model"],
            registry=self.registry,
        )
        self.loaded_models = Gauge("stratum_loaded_models", "Engines held in memory", registry=self.registry)
        # The model cache (gateway/model_cache.py); kind is "model" or "adapter".
        labels = ["model", "kind"]
        self.cache_loads = Counter(
            "stratum_model_cache_loads", "Models/adapters loaded (misses)", labels, registry=self.registry
        )
        self.cache_hits = Counter(
            "stratum_model_cache_hits",
            "Requests served by a loaded model/adapter",
            labels,
            registry=self.registry,
        )
        self.cache_evictions = Counter(
            "stratum_model_cache_evictions",
            "Models/adapters evicted to fit the memory budget",
            labels,
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "stratum_model_cache_bytes",
            "Bytes of weights held by loaded models and adapters",
            registry=self.registry,
        )

    def observe(self, *, endpoint: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, model, str(status)).inc()
        self.latency.labels(endpoint, model).observe(seconds)

    def count_tokens(self, *, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.labels(model, "in").inc(prompt)
        if completion:
            self.tokens.labels(model, "out").inc(completion)

    def render(self) -> bytes:
        return generate_latest(self.registry)
