"""The last links of a fallback chain as engines: the rule responder and the human hand-off.

Both implement the engine contract (``TextEngine``), so the gateway streams or collects their
answers exactly like a model's, with the same SSE framing and usage accounting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio

from stratum.engine.base import GenerationChunk, GenerationRequest, ModelInfo
from stratum.errors import StratumError
from stratum.routing.rules import RuleService
from stratum.routing.tickets import TicketService, question_of

# Pieces an answer is streamed in, so a streaming client sees it arrive like a model's.
_PIECE_CHARS = 16


class NoAnswer(StratumError):
    """This link cannot answer (no rule matched): the chain moves on whatever the triggers."""

    code = "no_answer"


def _chunks(text: str) -> list[GenerationChunk]:
    pieces = [text[i : i + _PIECE_CHARS] for i in range(0, len(text), _PIECE_CHARS)] or [""]
    out = [GenerationChunk(text=p, prompt_tokens=0, completion_tokens=0) for p in pieces]
    out.append(GenerationChunk(text="", prompt_tokens=0, completion_tokens=0, finish_reason="stop"))
    return out


async def _replay(chunks: list[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    for chunk in chunks:
        yield chunk


class _LinkEngine:
    info = ModelInfo(architecture="fallback-link")
    queue_depth = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        return None


class RulesEngine(_LinkEngine):
    """Answers with the best-matching responder rule's template; ``NoAnswer`` when none matches.

    Usage: no tokens are generated, so prompt and completion tokens are reported as 0.
    """

    def __init__(self, rules: RuleService, *, model: str) -> None:
        self.rules, self.model = rules, model
        self.rule: str | None = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._answer(request)

    async def _answer(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        text = question_of(request.messages) if request.messages is not None else request.prompt or ""
        found = await anyio.to_thread.run_sync(lambda: self.rules.answer(text=text, model=self.model))
        if found is None:
            raise NoAnswer("no responder rule matches the request")
        rule, answer = found
        self.rule = rule.name
        for chunk in _chunks(answer):
            yield chunk


HANDOFF_MESSAGE = (
    "Your request has been handed to a person. Ticket: {ticket}. "
    "Fetch the answer with GET /v1/tickets/{ticket}. "
    "您的请求已转交人工处理，工单号：{ticket}。"
)


class HumanEngine(_LinkEngine):
    """Stores the request as a ticket and answers with the ticket id (never fails to answer)."""

    def __init__(
        self,
        tickets: TicketService,
        *,
        model: str,
        reason: Callable[[], str],
        tenant: dict[str, str | None],
    ) -> None:
        self.tickets, self.model, self.reason, self.tenant = tickets, model, reason, tenant
        self.ticket_id: str | None = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._answer(request)

    async def _answer(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        messages: Sequence[dict[str, Any]] = request.messages or [
            {"role": "user", "content": request.prompt or ""}
        ]
        if self.ticket_id is None:  # n > 1 choices share one ticket
            ticket = await anyio.to_thread.run_sync(
                lambda: self.tickets.create(
                    model=self.model, messages=messages, reason=self.reason(), **self.tenant
                )
            )
            self.ticket_id = ticket.id
        for chunk in _chunks(HANDOFF_MESSAGE.format(ticket=self.ticket_id)):
            yield chunk
