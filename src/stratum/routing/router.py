"""Which backend answers a request: routes, weights, priorities, bursts and circuit breakers.

A route lists backends (registry references) with a priority and a weight. The router walks the
priorities from the lowest number: within one priority it picks backends in a weighted random
order; a backend whose circuit is open is skipped; a backend that reports a queue (the embedded
engine) longer than the route's ``burst_queue`` is passed over for the next priority — the burst —
and tried again only if every later backend failed. When the queue drains, the next request stays
local again: the decision is made per request, so there is nothing to switch back.

A model without a stored route has an implicit one: the registry model of the same name, no
fallback. The router never imports the gateway: it gets engines through ``engine_of``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from stratum.engine.base import TextEngine
from stratum.errors import StratumError
from stratum.routing.circuit import STATE_VALUES, CircuitBreaker
from stratum.routing.metrics import RoutingMetrics
from stratum.routing.routes import RouteService
from stratum.routing.schemas import ALL_TRIGGERS, Backend, Route

log = logging.getLogger(__name__)

# How long a route read from the store is reused: a `stratum routes set` is live within a second.
_ROUTE_TTL_S = 1.0

EngineOf = Callable[[str], Awaitable[tuple[str, TextEngine]]]


@dataclass
class Candidate:
    """A backend to try: its resolved version reference, its engine, and whether it is a burst."""

    ref: str
    engine: TextEngine
    breaker: CircuitBreaker
    burst: bool = False


@dataclass
class Plan:
    route: Route
    implicit: bool
    # Errors met while resolving backends (a misnamed backend), reported if nothing answers.
    errors: list[StratumError] = field(default_factory=list)


def implicit_backend(model: str) -> Backend:
    # Not validated: any name a client sends must reach the registry, which answers 404 for it.
    return Backend.model_construct(model=model, priority=0, weight=1.0)


def implicit_route(model: str) -> Route:
    """The route of a model without a stored one: the registry model of that name, no fallback."""
    return Route.model_construct(
        model=model,
        backends=[implicit_backend(model)],
        fallback=[],
        triggers=list(ALL_TRIGGERS),
        burst_queue=None,
        timeout_s=None,
        updated_at=None,
    )


class Router:
    """Serves: the gateway's dispatch (plans and breakers) and its health-check loop."""

    def __init__(
        self,
        routes: RouteService,
        metrics: RoutingMetrics,
        *,
        burst_queue: int,
        circuit_failures: int,
        circuit_open_s: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.routes = routes
        self.metrics = metrics
        self.burst_queue = burst_queue
        self.circuit_failures = circuit_failures
        self.circuit_open_s = circuit_open_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._cache: dict[str, tuple[float, Route | None]] = {}

    def breaker(self, ref: str) -> CircuitBreaker:
        found = self._breakers.get(ref)
        if found is None:
            kwargs = {"clock": self._clock} if self._clock is not None else {}
            found = CircuitBreaker(failures=self.circuit_failures, open_s=self.circuit_open_s, **kwargs)
            self._breakers[ref] = found
            self.metrics.circuit.labels(ref).set(0)
        return found

    def breakers(self) -> dict[str, CircuitBreaker]:
        return dict(self._breakers)

    def report(self, ref: str, *, ok: bool | None, trigger: str | None = None) -> None:
        """Record an attempt's outcome: ok, failed (counts for the circuit) or no verdict (None)."""
        breaker = self.breaker(ref)
        if ok is True:
            breaker.success()
        elif ok is False:
            breaker.failure()
            self.metrics.errors.labels(ref, trigger or "error").inc()
        else:
            breaker.release()
            if trigger is not None:
                self.metrics.errors.labels(ref, trigger).inc()
        self.metrics.circuit.labels(ref).set(STATE_VALUES[breaker.state])

    async def plan(self, model: str) -> Plan:
        now = anyio.current_time()
        cached = self._cache.get(model)
        if cached is None or now - cached[0] > _ROUTE_TTL_S:
            cached = (now, await anyio.to_thread.run_sync(self.routes.find, model))
            self._cache[model] = cached
        route = cached[1]
        if route is None:
            return Plan(route=implicit_route(model), implicit=True)
        if not route.backends:
            route = route.model_copy(update={"backends": [implicit_backend(model)]})
        return Plan(route=route, implicit=False)

    def invalidate(self) -> None:
        self._cache.clear()

    async def candidates(self, plan: Plan, engine_of: EngineOf) -> AsyncIterator[Candidate]:
        """Backends in the order to try them (see the module docstring)."""
        route = plan.route
        threshold = self.burst_queue if route.burst_queue is None else route.burst_queue
        priorities = sorted({b.priority for b in route.backends})
        passed_over: list[Candidate] = []
        bursting = False
        for position, priority in enumerate(priorities):
            has_next = position < len(priorities) - 1
            members = [b for b in route.backends if b.priority == priority]
            for backend in self._weighted_order(members):
                try:
                    ref, engine = await engine_of(backend.model)
                except StratumError as error:
                    level = (
                        logging.DEBUG if plan.implicit else logging.WARNING
                    )  # a typo'd name: the client's 404
                    log.log(level, "route %s: backend %s unavailable: %s", route.model, backend.model, error)
                    plan.errors.append(error)
                    continue
                breaker = self.breaker(ref)
                if has_next and engine.queue_depth > threshold:
                    self.metrics.bursts.labels(route.model, ref).inc()
                    passed_over.append(Candidate(ref, engine, breaker))
                    bursting = True
                    continue
                if not breaker.allow():
                    continue
                yield Candidate(ref, engine, breaker, burst=bursting)
        for candidate in passed_over:
            if candidate.breaker.allow():
                yield candidate

    def _weighted_order(self, members: list[Backend]) -> list[Backend]:
        """A weighted random order without replacement (Efraimidis–Spirakis keys)."""
        if len(members) == 1:
            return members
        keyed = [(self._rng.random() ** (1.0 / b.weight), b) for b in members]
        return [b for _, b in sorted(keyed, key=lambda kb: kb[0], reverse=True)]

    async def check_health(self, backends: list[tuple[str, object]]) -> None:
        """One round of health checks over the loaded backends that can be checked (upstreams)."""
        for ref, engine in backends:
            check = getattr(engine, "check_health", None)
            if check is None:
                continue
            ok = bool(await check())
            self.metrics.healthy.labels(ref).set(1 if ok else 0)
            breaker = self.breaker(ref)
            breaker.health(ok)
            self.metrics.circuit.labels(ref).set(STATE_VALUES[breaker.state])
