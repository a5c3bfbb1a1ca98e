"""Routing: routes (backends by priority and weight, bursts), circuit breakers, fallback chains
(other models → rule responder → human hand-off queue)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from stratum.cache import CacheStore, LocalStore, RedisStore, ResponseCache
from stratum.cache.service import Encode
from stratum.routing.metrics import RoutingMetrics
from stratum.routing.router import Router
from stratum.routing.routes import RouteService
from stratum.routing.rules import RuleService
from stratum.routing.tickets import TicketService
from stratum.settings import Settings
from stratum.storage import Database


@dataclass
class RoutingServices:
    """What the gateway holds for routing (built by ``create_app``'s lifespan)."""

    routes: RouteService
    rules: RuleService
    tickets: TicketService
    router: Router
    metrics: RoutingMetrics
    cache: ResponseCache | None
    fallback_timeout: float


def build_routing(
    settings: Settings,
    db: Database,
    registry: CollectorRegistry,
    *,
    encode: Encode | None = None,
) -> RoutingServices:
    """The routing services from settings: the cache in Redis when ``STRATUM_REDIS_URL`` is set."""
    metrics = RoutingMetrics(registry)
    routes = RouteService(db)
    router = Router(
        routes,
        metrics,
        burst_queue=settings.burst_queue,
        circuit_failures=settings.circuit_failures,
        circuit_open_s=settings.circuit_open_s,
    )
    cache = None
    if settings.cache:
        store: CacheStore = (
            RedisStore(settings.redis_url.get_secret_value())
            if settings.redis_url is not None
            else LocalStore(settings.cache_entries)
        )
        cache = ResponseCache(
            store, ttl_s=settings.cache_ttl, semantic_threshold=settings.semantic_cache, encode=encode
        )
    return RoutingServices(
        routes=routes,
        rules=RuleService(db),
        tickets=TicketService(db),
        router=router,
        metrics=metrics,
        cache=cache,
        fallback_timeout=settings.fallback_timeout,
    )


__all__ = [
    "RouteService",
    "Router",
    "RoutingMetrics",
    "RoutingServices",
    "RuleService",
    "TicketService",
    "build_routing",
]
