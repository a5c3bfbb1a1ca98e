"""Quota and usage around one inference request: reserve the worst case, settle to actual usage.

    meter.admit(generation)   before the model runs: counts prompt tokens, reserves
                              prompt + max_tokens at every level (429 naming the limit if any is full)
    generation.on_finish      records the actual tokens when the generation ends (stream end, error,
                              client disconnect)
    SettleMiddleware          after the response is over, however it ended, settles the reservation
                              to the recorded usage and writes the usage record

Settling in the middleware rather than in the route means nothing is left reserved when a client
disconnects before its stream even started.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratum.engine.base import GenerationRequest, TextEngine
from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.gateway.generation import Generation
from stratum.gateway.state import AppState
from stratum.governance.guard.service import Findings
from stratum.governance.prices import Price, cost
from stratum.governance.quotas import Reservation
from stratum.governance.usage import UsageEntry

log = logging.getLogger(__name__)

# Completion tokens assumed for a request without max_tokens on an engine that does not know its
# context length (upstreams); the request is then capped at this so the reservation stays an upper bound.
DEFAULT_COMPLETION_BOUND = 4096
# Per-message allowance for chat-template tokens when an upstream cannot count the prompt.
_TEMPLATE_TOKENS_PER_MESSAGE = 8


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    """An upper bound for engines that cannot count: byte-level tokenizers never make more tokens
    than UTF-8 bytes, plus a chat-template allowance per message."""
    if request.messages is not None:
        text = "".join(str(m.get("content") or "") for m in request.messages)
        return len(text.encode()) + _TEMPLATE_TOKENS_PER_MESSAGE * (len(request.messages) + 1)
    return len((request.prompt or "").encode())


class Meter:
    """Serves: the inference routes (``admit``/``admit_tokens``/``record``) and ``SettleMiddleware``."""

    def __init__(self, state: AppState, context: RequestContext, endpoint: str) -> None:
        self.state = state
        self.context = context
        self.endpoint = endpoint
        self.model: str | None = None
        self.reservation: Reservation | None = None
        self.usage: tuple[int, int] | None = None
        # The model's price when the request counts against a cost budget (None: no cost to reserve).
        self.price: Price | None = None
        # Prompt tokens counted at admission: billed even if the client leaves before the first token.
        self.counted_prompt = 0
        # What the content guard found (``gateway.guarding``), recorded with the usage entry.
        self.findings: Findings | None = None

    async def admit(self, generation: Generation) -> None:
        """Reserve the worst case of ``generation`` (capping unbounded requests), before it starts."""
        prompts = await anyio.to_thread.run_sync(_prompt_tokens, generation.engine, generation.requests)
        principal = self.context.principal
        quotas = self.state.quotas
        bound_all = quotas.has_token_limits(principal)
        requests, completion = [], 0
        for request, prompt in zip(generation.requests, prompts, strict=True):
            limit = request.params.max_tokens
            if limit is None:
                context_length = getattr(generation.engine.info, "context_length", None)
                limit = max(1, context_length - prompt) if context_length else DEFAULT_COMPLETION_BOUND
                if bound_all:
                    params = dataclasses.replace(request.params, max_tokens=limit)
                    request = dataclasses.replace(request, params=params)
            requests.append(request)
            completion += limit
        unique_prompts = {p: n for p, n in zip(generation.prompt_of, prompts, strict=True)}
        worst = sum(unique_prompts.values()) + completion
        generation.requests = requests
        self.counted_prompt = sum(unique_prompts.values())
        await self.admit_tokens(generation.model, worst, prompt_tokens=self.counted_prompt)
        generation.on_finish = self.record

    async def admit_tokens(self, model: str, tokens: int, *, prompt_tokens: int | None = None) -> None:
        """Reserve ``tokens`` (of which ``prompt_tokens`` are input; all of them when not given)."""
        self.model = model
        principal = self.context.principal
        worst_cost = Decimal(0)
        if self.state.quotas.has_cost_limits(principal):
            self.price = await anyio.to_thread.run_sync(self.state.prices.find, model)
            if self.price is not None:
                prompt = tokens if prompt_tokens is None else prompt_tokens
                worst_cost = cost(self.price, prompt_tokens=prompt, completion_tokens=tokens - prompt)
        self.reservation = await anyio.to_thread.run_sync(
            lambda: self.state.quotas.reserve(principal, tokens=tokens, cost=worst_cost)
        )

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.usage = (prompt_tokens, completion_tokens)

    def close(self, status: int) -> None:
        """Settle and record (blocking: the middleware runs it in a worker thread)."""
        if self.reservation is None:
            return
        prompt, completion = self.usage or (0, 0)
        if self.usage is not None:
            prompt = max(prompt, self.counted_prompt)
        actual = Decimal(0)
        if self.price is not None:
            actual = cost(self.price, prompt_tokens=prompt, completion_tokens=completion)
        self.state.quotas.settle(self.reservation, tokens=prompt + completion, cost=actual)
        principal = self.context.principal
        entry = UsageEntry(
            request_id=self.context.request_id,
            key_id=principal.key_id,
            org_id=principal.org.id if principal.org else None,
            project_id=principal.project.id if principal.project else None,
            model=self.model or "",
            endpoint=self.endpoint,
            prompt_tokens=prompt,
            completion_tokens=completion,
            status=status,
            guard=self.findings.detail() if self.findings and not self.findings.empty() else None,
        )
        # Written by the batched writer, off the request path.
        self.state.audit_writer.submit(entry)


def _prompt_tokens(engine: TextEngine, requests: Sequence[GenerationRequest]) -> list[int]:
    counts = []
    for request in requests:
        counted = engine.count_prompt_tokens(request)
        counts.append(counted if counted is not None else estimate_prompt_tokens(request))
    return counts


def metered(endpoint: str) -> Any:
    """A route dependency giving the route its ``Meter``; the middleware settles it afterwards."""

    async def meter(request: Request, context: ContextDep, state: StateDep) -> Meter:
        created = Meter(state, context, endpoint)
        request.state.meter = created
        return created

    return Depends(meter)


ChatMeter = Annotated[Meter, metered("chat")]
CompletionsMeter = Annotated[Meter, metered("completions")]
EmbeddingsMeter = Annotated[Meter, metered("embeddings")]


class SettleMiddleware:
    """Settles the request's ``Meter`` once the response is over (complete, failed or abandoned)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            meter = scope.get("state", {}).get("meter")
            if meter is not None:
                # Shielded: a cancelled request must still give its reservation back.
                with anyio.CancelScope(shield=True):
                    try:
                        await anyio.to_thread.run_sync(meter.close, status["code"] or 499)
                    except Exception:
                        log.exception("could not settle the quota reservation of a request")
