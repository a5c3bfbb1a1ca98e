"""Answering a generation through its route: backends (bursts, circuits), then the fallback chain.

    plan      the model's route (or the implicit one: the registry model itself)
    backends  tried in the router's order; each is admitted and *primed* (its first chunk awaited
              within the route's timeout) before any byte goes to the client, so a backend that
              errs, stalls, is saturated or is blocked by the safety guard can still be replaced
    fallback  the route's links in order — another model, the rule responder, a person — when the
              backends failed with one of the route's triggers

Quota is reserved once, on the first attempt, and settled to whatever finally answered. After the
first chunk nothing is retried: a stream that breaks later ends with an SSE error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from stratum.engine.base import GenerationRequest, TextEngine
from stratum.errors import EngineError, Overloaded, StratumError, UpstreamError
from stratum.gateway.deps import RequestContext
from stratum.gateway.generation import Generation
from stratum.gateway.metering import Meter
from stratum.gateway.state import AppState
from stratum.registry.schemas import ModelVersionPublic
from stratum.routing import RoutingServices, build_routing
from stratum.routing.links import HumanEngine, NoAnswer, RulesEngine
from stratum.routing.router import Plan, implicit_route
from stratum.routing.schemas import Route

log = logging.getLogger(__name__)

FALLBACK_HEADER = "x-stratum-fallback"
BACKEND_HEADER = "x-stratum-backend"
TICKET_HEADER = "x-stratum-ticket"


@dataclass
class Dispatched:
    """What answered: the running generation and which link of the chain it came from."""

    generation: Generation
    link: str = "none"  # "none" (a route backend), "model:NAME", "rules" or "human"
    backend: str | None = None  # the registry version (or "rules"/"human") that answered
    version: ModelVersionPublic | None = None
    ticket_id: str | None = None
    rule: str | None = None
    burst: bool = False
    triggers: list[str] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        headers = {FALLBACK_HEADER: self.link, BACKEND_HEADER: self.backend or self.link}
        if self.ticket_id:
            headers[TICKET_HEADER] = self.ticket_id
        return headers

    def extra(self) -> dict[str, object]:
        """The ``stratum`` field of the JSON body / first stream chunk."""
        info: dict[str, object] = {"fallback": self.link, "backend": self.backend}
        if self.ticket_id:
            info["ticket_id"] = self.ticket_id
        if self.rule:
            info["rule"] = self.rule
        if self.burst:
            info["burst"] = True
        return info


def trigger_of(error: BaseException) -> str | None:
    """Which fallback trigger an attempt's failure is (None: the client's own mistake, no fallback)."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if not isinstance(error, StratumError):
        return None
    if error.code == "content_blocked":
        return "content_blocked"
    if isinstance(error, Overloaded) or error.code == "upstream_rate_limited":
        return "saturation"
    if error.code == "first_token_timeout":
        return "timeout"
    if error.status_code >= 500:
        return "error"
    return None


def routing_of(state: AppState) -> RoutingServices:
    assert state.routing is not None, "create_app builds the routing services"
    return state.routing


class _Attempts:
    """One request's attempts: admits quota once, primes each candidate, remembers failures."""

    def __init__(
        self,
        state: AppState,
        context: RequestContext,
        meter: Meter,
        requests: list[GenerationRequest],
        *,
        model: str,
        timeout_s: float,
        prompt_of: list[int] | None = None,
    ) -> None:
        self.state, self.context, self.meter = state, context, meter
        self.requests, self.model = requests, model
        self.timeout_s, self.prompt_of = timeout_s, prompt_of
        self.admitted: Generation | None = None
        self.errors: list[tuple[str, StratumError]] = []

    @property
    def last_trigger(self) -> str:
        return self.errors[-1][0] if self.errors else "error"

    async def run(
        self, engine: TextEngine, *, served: str | None = None, prime: bool = True, timed: bool = True
    ) -> Generation:
        """Admit (once), start and (``prime``) wait for the first chunk of ``engine``, within the
        first-token timeout when ``timed``; ``served`` labels its token metrics."""
        generation = Generation(
            engine,
            list(self.requests),
            model=served or self.model,
            metrics=self.state.metrics,
            prompt_of=self.prompt_of,
        )
        if self.admitted is None:
            await self.meter.admit(generation)  # a 429 here is final: it is raised, not a trigger
            self.admitted = generation
        else:
            generation.requests = list(self.admitted.requests)
            generation.on_finish = self.admitted.on_finish
        generation.start()
        if not prime:
            return generation
        try:
            await generation.prime(self.timeout_s if timed else None)
        except TimeoutError:
            raise EngineError(
                f"no first token within {self.timeout_s:g}s", code="first_token_timeout"
            ) from None
        return generation

    def failed(self, label: str, error: StratumError) -> str | None:
        trigger = trigger_of(error)
        if trigger is not None:
            self.errors.append((trigger, error))
            log.info("%s failed (%s): %s", label, trigger, error.message)
        return trigger


async def dispatch(
    state: AppState,
    context: RequestContext,
    meter: Meter,
    *,
    model: str,
    requests: list[GenerationRequest],
    accept: Callable[[ModelVersionPublic], None] | None = None,
    prompt_of: list[int] | None = None,
) -> Dispatched:
    """Run ``requests`` for ``model`` through its route; raises the last error if nothing answered.

    ``prompt_of``: which prompt each request continues (text completions with several prompts).
    """
    routing = routing_of(state)
    plan = await routing.router.plan(model)
    route = plan.route
    attempts = _Attempts(
        state,
        context,
        meter,
        requests,
        model=model,
        timeout_s=route.timeout_s or routing.fallback_timeout,
        prompt_of=prompt_of,
    )
    alternatives = len(route.backends) > 1 or bool(route.fallback)
    answered = await _backends(state, routing, plan, attempts, accept=accept, alternatives=alternatives)
    if answered is not None:
        return answered
    if not attempts.errors:
        # Nothing was tried: every backend's circuit is open, or none could be resolved.
        if plan.implicit and plan.errors:
            raise plan.errors[0]
        blocked = UpstreamError(
            f"every backend of {model!r} has an open circuit; retry later", code="circuit_open"
        )
        attempts.errors.append(("error", plan.errors[0] if plan.errors else blocked))
    if attempts.errors and attempts.last_trigger in route.triggers:
        for position, link in enumerate(route.fallback):
            more = position < len(route.fallback) - 1
            answered = await _link(
                state, routing, context, route, link.kind, link.target, attempts, accept, more=more
            )
            if answered is not None:
                routing.metrics.fallbacks.labels(model, answered.link).inc()
                answered.triggers = [t for t, _ in attempts.errors]
                return answered
    raise attempts.errors[-1][1]


async def _backends(
    state: AppState,
    routing: RoutingServices,
    plan: Plan,
    attempts: _Attempts,
    *,
    accept: Callable[[ModelVersionPublic], None] | None,
    alternatives: bool,
) -> Dispatched | None:
    """The route's backends in the router's order; None when all failed with a trigger.

    Without ``alternatives`` (one backend, no fallback: the implicit route of a plain model) a
    local engine is not primed, so a request waiting in its queue gets its response headers at
    once as before, and no first-token timeout applies; upstreams are still primed so that their
    circuit breaker sees failures before the first byte.
    """
    versions: dict[str, ModelVersionPublic] = {}

    async def engine_of(ref: str) -> tuple[str, TextEngine]:
        version = await state.pool.resolve(ref)
        if attempts.context.model_version is None:
            # Errors name the version the request resolved to (a deployment has set its own).
            attempts.context.model_version = version.ref
        version, engine = await state.pool.text_engine_of(version)
        versions[version.ref] = version
        return version.ref, engine

    try:
        async for candidate in routing.router.candidates(plan, engine_of):
            version = versions[candidate.ref]
            if accept is not None:
                try:
                    accept(version)
                except StratumError:
                    candidate.breaker.release()
                    raise
            routing.metrics.requests.labels(candidate.ref).inc()
            started = time.perf_counter()
            prime = alternatives or version.source == "upstream"
            try:
                generation = await attempts.run(
                    candidate.engine, served=version.name, prime=prime, timed=alternatives
                )
            except StratumError as error:
                trigger = attempts.failed(candidate.ref, error)
                if trigger is None:
                    routing.router.report(candidate.ref, ok=None)
                    raise
                # Saturation and safety blocks say nothing about the backend's health.
                counts = trigger in ("error", "timeout") or error.code == "upstream_rate_limited"
                routing.router.report(candidate.ref, ok=False if counts else None, trigger=trigger)
                continue
            if prime:
                routing.metrics.latency.labels(candidate.ref).observe(time.perf_counter() - started)
            routing.router.report(candidate.ref, ok=True if prime else None)
            return Dispatched(
                generation=generation, backend=candidate.ref, version=version, burst=candidate.burst
            )
    except StratumError as error:
        # A backend's engine could not even be built (e.g. a wrong artifact): that is an error.
        if plan.implicit or trigger_of(error) is None:
            raise
        attempts.failed("route", error)
    return None


async def _link(
    state: AppState,
    routing: RoutingServices,
    context: RequestContext,
    route: Route,
    kind: str,
    target: str | None,
    attempts: _Attempts,
    accept: Callable[[ModelVersionPublic], None] | None,
    *,
    more: bool,
) -> Dispatched | None:
    if kind == "model":
        assert target is not None
        sub = Plan(route=implicit_route(target), implicit=False)
        try:
            answered = await _backends(state, routing, sub, attempts, accept=accept, alternatives=more)
        except StratumError as error:
            if attempts.failed(f"model:{target}", error) is None:
                raise
            return None
        if answered is not None:
            answered.link = f"model:{target}"
        return answered
    principal = context.principal
    engine: RulesEngine | HumanEngine
    if kind == "rules":
        engine = RulesEngine(routing.rules, model=route.model)
    else:
        tenant = {
            "org_id": principal.org.id if principal.org else None,
            "project_id": principal.project.id if principal.project else None,
            "key_id": principal.key_id,
        }
        engine = HumanEngine(
            routing.tickets, model=route.model, reason=lambda: attempts.last_trigger, tenant=tenant
        )
    try:
        generation = await attempts.run(engine)
    except NoAnswer:
        return None
    except StratumError as error:
        attempts.failed(kind, error)
        return None
    if isinstance(engine, HumanEngine):
        return Dispatched(generation=generation, link="human", backend="human", ticket_id=engine.ticket_id)
    return Dispatched(generation=generation, link="rules", backend="rules", rule=engine.rule)


async def start_routing(state: AppState) -> RoutingServices:
    """Build the routing services. The semantic cache's encoder (the bundled e5) is loaded on its
    first use, from the worker thread the cache runs in."""
    settings = state.settings
    encode = None
    if settings.cache and settings.semantic_cache is not None:
        from stratum.engine.embeddings import BUILTIN_ENCODER_NAME

        def encode(text: str) -> Any:
            _, encoder = anyio.from_thread.run(state.pool.encoder, BUILTIN_ENCODER_NAME)
            return encoder.encode([text], kind="query")[0]

    return build_routing(settings, state.db, state.metrics.registry, encode=encode)


async def health_loop(state: AppState) -> None:
    """Check loaded upstream backends every ``STRATUM_HEALTH_INTERVAL`` seconds (0: never)."""
    interval = state.settings.health_interval
    if not interval:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            loaded = [(version.ref, engine) for version, engine in state.pool.loaded()]
            await routing_of(state).router.check_health(loaded)
        except Exception:  # a check must never take the gateway down; try again next round
            log.warning("upstream health checks failed", exc_info=True)


def stop_routing(state: AppState) -> None:
    cache = state.routing.cache if state.routing is not None else None
    close = getattr(cache.store, "close", None) if cache is not None else None
    if close is not None:
        close()
