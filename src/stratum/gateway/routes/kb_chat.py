"""Knowledge-base answering inside ``/v1/chat/completions`` (the chat route calls ``prepare``).

A request uses knowledge bases when its model is ``kb/<name>`` (answered by the KB's
``generator_model``, or extractively when it has none) or when it carries
``knowledge_bases: ["name", …]`` (``extra_body`` in the OpenAI SDK) on any model. KB names are
``NAME`` (the key's own project) or ``ORG/PROJECT/NAME``; each needs ``kb.read``.

``prepare`` retrieves and returns a ``KbChat``: either a finished answer (a refusal, or an
extractive answer) that the route returns as is, or the model and grounded messages to generate
with. Citations are added to the response as ``citations`` (and, when streaming, in a final
chunk before ``[DONE]``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi.responses import JSONResponse, StreamingResponse

from stratum.engine.base import GenerationRequest, SamplingParams, TextEngine
from stratum.errors import InvalidRequest
from stratum.gateway.deps import RequestContext
from stratum.gateway.routes.kb import kb_encoder, knowledge, resolve_kb
from stratum.gateway.routes.streaming import sse_response
from stratum.gateway.sse import DONE
from stratum.gateway.state import AppState
from stratum.knowledge.answer import Grounding, extractive_answer, ground, grounded_messages, refusal_text
from stratum.knowledge.schemas import KbPublic, SearchRequest
from stratum.protocol.base import new_id, now
from stratum.protocol.chat import ChatCompletionRequest

KB_PREFIX = "kb/"
# A source cut to fit a small context keeps at least this many characters.
MIN_SOURCE_CHARS = 40


@dataclass
class KbChat:
    model: str
    messages: list[dict[str, Any]]
    citations: list[dict[str, Any]] = field(default_factory=list)
    # Set when the answer is known without a generator (refusal or extractive mode).
    answer: str | None = None
    refused: bool = False
    grounding: Grounding | None = None

    def messages_for(self, engine: TextEngine, completion_tokens: int | None) -> list[dict[str, Any]]:
        """The grounded messages with as many sources (best first) as the generator's context
        holds next to the completion; the citations keep only the sources that were sent."""
        grounding = self.grounding
        context = engine.info.context_length
        if grounding is None or context is None:
            return self.messages
        budget = context - (completion_tokens or 0)
        hits = list(grounding.hits)
        while True:
            trial = Grounding(question=grounding.question, hits=hits)
            messages = grounded_messages(trial, self.messages)
            request = GenerationRequest(request_id="kb-fit", params=SamplingParams(), messages=messages)
            tokens = engine.count_prompt_tokens(request)
            if tokens is None or tokens <= budget:
                self.citations = self.citations[: len(hits)]
                return messages
            if len(hits) > 1:
                hits.pop()
                continue
            kb, hit = hits[0]
            if len(hit.text) <= MIN_SOURCE_CHARS:  # nothing sensible left to cut: the engine decides
                self.citations = self.citations[:1]
                return messages
            hits = [(kb, hit.model_copy(update={"text": hit.text[: len(hit.text) // 2]}))]

    def annotate(self, payload: dict[str, Any]) -> dict[str, Any]:
        payload["citations"] = self.citations
        payload["kb_refused"] = self.refused
        return payload

    def direct_response(
        self, body: ChatCompletionRequest, headers: dict[str, str]
    ) -> JSONResponse | StreamingResponse:
        """The response to a request answered without a generator (no tokens are metered)."""
        assert self.answer is not None
        completion_id, created = new_id("chatcmpl"), now()
        if not body.stream:
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": i,
                        "message": {
                            "role": "assistant",
                            "content": self.answer,
                            "tool_calls": None,
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                    for i in range(body.n)
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "system_fingerprint": None,
            }
            return JSONResponse(self.annotate(payload), headers=headers)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            body_ = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
            }
            return (
                f"data: {json.dumps({**body_, 'choices': choices, **extra}, ensure_ascii=False)}\n\n".encode()
            )

        async def events() -> AsyncIterator[bytes]:
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}} for i in range(body.n)])
            yield chunk([{"index": i, "delta": {"content": self.answer}} for i in range(body.n)])
            yield chunk([{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(body.n)])
            yield chunk([], citations=self.citations, kb_refused=self.refused)
            yield DONE

        return sse_response(events(), headers=headers)

    async def with_citations(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the route's SSE events through, adding a ``citations`` chunk before ``[DONE]``."""
        last: dict[str, Any] | None = None
        async for event in events:
            if event == DONE:
                if last is not None:
                    extra = {k: last[k] for k in ("id", "object", "created", "model") if k in last}
                    citations = {
                        **extra,
                        "choices": [],
                        "citations": self.citations,
                        "kb_refused": self.refused,
                    }
                    yield f"data: {json.dumps(citations, ensure_ascii=False)}\n\n".encode()
            elif event.startswith(b"data: {"):
                with contextlib.suppress(ValueError):
                    last = json.loads(event[6:])
            yield event


def _requested(body: ChatCompletionRequest) -> tuple[list[str], bool]:
    extra = body.model_extra or {}
    names = extra.get("knowledge_bases") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidRequest(
            "knowledge_bases must be a list of knowledge-base names", param="knowledge_bases"
        )
    via_model = body.model.startswith(KB_PREFIX)
    if via_model:
        names = [body.model[len(KB_PREFIX) :], *names]
    return list(dict.fromkeys(names)), via_model


async def _kb(context: RequestContext, state: AppState, ref: str) -> KbPublic:
    parts = ref.split("/")
    if len(parts) == 3:
        return await resolve_kb(context, state, parts[2], f"{parts[0]}/{parts[1]}", "read")
    if len(parts) != 1:
        raise InvalidRequest(
            f"a knowledge base is NAME or ORG/PROJECT/NAME, not {ref!r}", param="knowledge_bases"
        )
    principal = context.principal
    if principal.project is None and principal.role in ("admin", "org_admin"):
        # No project of its own: a bare name must be unique among the KBs the key can see.
        org_id = None if principal.is_admin else (principal.org.id if principal.org else "-")
        named = [
            kb
            for kb in await anyio.to_thread.run_sync(lambda: knowledge(state).list(org_id=org_id))
            if kb.name == ref
        ]
        if len(named) != 1:
            problem = "no knowledge base" if not named else "more than one knowledge base"
            raise InvalidRequest(f"{problem} named {ref!r}: use ORG/PROJECT/NAME", param="model")
        return await resolve_kb(context, state, ref, named[0].project, "read")
    return await resolve_kb(context, state, ref, None, "read")


async def prepare(state: AppState, context: RequestContext, body: ChatCompletionRequest) -> KbChat | None:
    """Retrieve for a KB request and decide how it is answered; ``None`` for a plain chat request."""
    names, via_model = _requested(body)
    if not names:
        return None
    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    if not question.strip():
        raise InvalidRequest("a knowledge-base request needs a user message", param="messages")
    bases = [await _kb(context, state, name) for name in names]
    results = []
    for kb in bases:
        encoder = await kb_encoder(state, kb)
        request = SearchRequest(query=question[:4000], k=kb.settings.top_k)
        found = await anyio.to_thread.run_sync(
            lambda kb=kb, r=request, e=encoder: knowledge(state).search(kb, r, encoder=e)
        )
        results.append((kb, found.hits))
    grounding = ground(question, results)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    generator = bases[0].settings.generator_model if via_model else body.model
    plan = KbChat(model=generator or body.model, messages=messages, citations=grounding.citations)
    if grounding.refused:
        plan.answer, plan.refused = refusal_text(question), True
    elif generator is None:
        plan.answer = extractive_answer(grounding)
    else:
        plan.grounding = grounding
    return plan
