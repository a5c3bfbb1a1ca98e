"""The response cache around the chat route: probe before dispatch, remember after a full answer.

Billing of a hit (documented in the README): the request still counts for rate limits (rpm) and
its prompt tokens are recorded and billed as usual, but it generates nothing, so it is billed **0
completion tokens**. The ``usage`` in the response is the answer's own (as when it was generated),
so a client sees the same numbers on a hit as on a miss. Only answers of the route's
own backends are stored (never a fallback's rule or hand-off text), and only when every choice
finished normally (``stop``/``length``).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from stratum.cache import CachedChoice, CachedResponse, ResponseCache, is_deterministic, normalise_request
from stratum.errors import StratumError
from stratum.gateway.deps import RequestContext
from stratum.gateway.dispatch import Dispatched, routing_of
from stratum.gateway.generation import ChoiceResult
from stratum.gateway.state import AppState

CACHE_HEADER = "x-stratum-cache"
_CACHEABLE_FINISH = ("stop", "length")


@dataclass
class CacheProbe:
    cache: ResponseCache
    scope: str
    model: str
    version: str
    request: dict[str, object]
    hit: CachedResponse | None = None

    @property
    def header(self) -> str:
        return "hit" if self.hit is not None else "miss"


def scope_of(context: RequestContext) -> str:
    """The tenant a cached answer belongs to: the project, or the key when it has none."""
    principal = context.principal
    return f"project:{principal.project.id}" if principal.project else f"key:{principal.key_id}"


async def probe(
    state: AppState,
    context: RequestContext,
    *,
    model: str,
    messages: list[dict[str, object]] | None,
    params: dict[str, object],
    prompt: str | None = None,
) -> CacheProbe | None:
    """None when the request cannot be cached (cache off, not deterministic, unresolvable model)."""
    routing = routing_of(state)
    cache = routing.cache
    temperature, seed = params.get("temperature"), params.get("seed")
    if cache is None or not is_deterministic(temperature=temperature, seed=seed):  # type: ignore[arg-type]
        return None
    try:
        plan = await routing.router.plan(model)
        # The versions serving the name now: an alias moving to another version changes the key.
        refs = sorted({(await state.pool.resolve(b.model)).ref for b in plan.route.backends})
    except StratumError:
        return None  # dispatch reports the problem
    found = CacheProbe(
        cache=cache,
        scope=scope_of(context),
        model=model,
        version=",".join(refs),
        request=normalise_request(messages, params, prompt=prompt),
    )
    found.hit = await anyio.to_thread.run_sync(
        lambda: cache.lookup(scope=found.scope, model=model, version=found.version, request=found.request)
    )
    routing.metrics.cache.labels(found.hit.hit if found.hit else "miss").inc()
    return found


async def remember(found: CacheProbe | None, answer: Dispatched, choices: list[ChoiceResult]) -> None:
    if found is None or answer.link != "none":
        return
    if any(c.finish_reason not in _CACHEABLE_FINISH for c in choices):
        return
    generation = answer.generation
    response = CachedResponse(
        version=answer.backend or found.version,
        choices=[
            CachedChoice(index=c.index, text=c.text, finish_reason=c.finish_reason, tool_calls=c.tool_calls)
            for c in choices
        ],
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
    )
    await anyio.to_thread.run_sync(
        lambda: found.cache.put(
            scope=found.scope,
            model=found.model,
            version=found.version,
            request=found.request,
            response=response,
        )
    )
