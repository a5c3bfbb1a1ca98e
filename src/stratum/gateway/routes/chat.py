"""``POST /v1/chat/completions``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from stratum.engine.base import GenerationRequest
from stratum.errors import StratumError, UnsupportedFeature
from stratum.gateway import cached
from stratum.gateway.database_chat import database_chat, is_database_model
from stratum.gateway.deps import ContextDep, Permit, RequestContext, StateDep
from stratum.gateway.dispatch import FALLBACK_HEADER, Dispatched, dispatch
from stratum.gateway.generation import Generation, sampling_params
from stratum.gateway.guarding import Guarded
from stratum.gateway.metering import ChatMeter, Meter
from stratum.gateway.routes import kb_chat
from stratum.gateway.routes.streaming import VERSION_HEADER, Recorder, sse_response
from stratum.gateway.serving import answered, choose_version, served_hook
from stratum.gateway.sse import DONE, error_event, event
from stratum.protocol.base import Usage, dump, new_id, now
from stratum.protocol.chat import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatResponseMessage,
)
from stratum.registry.schemas import ModelVersionPublic

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])

# Fields an upstream understands and the embedded engine has no use for.
_PASSTHROUGH = (
    "tools",
    "tool_choice",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "parallel_tool_calls",
    "user",
)


@router.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=[Permit("chat")])
async def create_chat_completion(
    body: ChatCompletionRequest, context: ContextDep, state: StateDep, meter: ChatMeter
) -> JSONResponse | StreamingResponse:
    if body.unknown_fields():
        log.debug("ignoring unknown fields %s", body.unknown_fields())
    if is_database_model(body.model):  # "db/<name>": LLM + database QA (knowledge.sql)
        return await database_chat(body, context, state, meter)
    recorder = Recorder(state.metrics, endpoint="chat", model=body.model, started=context.started)
    try:
        guarded = await Guarded.open(state, context, meter)
        messages = await guarded.chat_messages([m.model_dump(exclude_none=True) for m in body.messages])
        context.prompt = messages  # as masked by the guard: what a feedback dataset may keep
        # Knowledge bases (model "kb/<name>" or knowledge_bases=[...]): retrieval and citations.
        rag = await kb_chat.prepare(state, context, body)
        if rag is not None and rag.answer is not None:
            recorder.done(200)
            return rag.direct_response(body, {"x-request-id": context.request_id})
        # A deployment (canary / A-B) picks the version; otherwise the name goes to its route as is.
        target, deployment = choose_version(state, context, rag.model if rag else body.model, user=body.user)
        if deployment is not None:
            # Recorded before anything loads: a candidate that cannot even load counts as failing.
            recorder.on_done = served_hook(
                state, context, model=body.model, version_ref=target, deployment=deployment
            )
        sent = body.model_dump(exclude_none=True)  # includes unknown fields the client sent
        passthrough = {k: sent[k] for k in _PASSTHROUGH if k in sent}
        if rag is not None:
            _, generator = await state.pool.text_engine(target)
            messages = rag.messages_for(generator, body.token_limit())
        # A grounded answer carries citations the cache does not keep: RAG requests bypass it.
        cache = (
            None if rag else await cached.probe(state, context, model=target, messages=messages, params=sent)
        )
        if cache is not None and cache.hit is not None:
            return await _cache_hit(body, context, meter, recorder, cache)
        requests = [
            GenerationRequest(
                request_id=f"{context.request_id}/{i}",
                params=sampling_params(body, max_tokens=body.token_limit(), choice=i),
                messages=messages,
                passthrough=passthrough,
                deadline_s=state.settings.request_timeout,
            )
            for i in range(body.n)
        ]
        answer = await dispatch(state, context, meter, model=target, requests=requests, accept=_accepts(body))
        generation = answer.generation
        headers = answered(state, context, recorder, answer, model=body.model, deployment=deployment)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    headers[cached.CACHE_HEADER] = cache.header if cache is not None else "bypass"
    if body.stream:
        events = _chunks(body, answer, recorder, cache, guarded)
        return sse_response(rag.with_citations(events) if rag else events, headers=headers)
    try:
        choices = await generation.collect()
        guarded.choices(choices)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    recorder.response_id = new_id("chatcmpl")
    context.answer = choices[0].text if choices else None
    recorder.done(200)
    await cached.remember(cache, answer, choices)
    completion = ChatCompletion(
        id=recorder.response_id,
        created=now(),
        model=body.model,
        choices=[
            ChatChoice(
                index=c.index,
                message=ChatResponseMessage(
                    content=c.text if c.text or not c.tool_calls else None, tool_calls=c.tool_calls or None
                ),
                finish_reason=c.finish_reason,
            )
            for c in choices
        ],
        usage=generation.usage(),
    )
    payload = {**dump(completion), "stratum": answer.extra()}
    return JSONResponse(rag.annotate(payload) if rag else payload, headers=headers)


def _accepts(body: ChatCompletionRequest) -> Callable[[ModelVersionPublic], None]:
    def accept(version: ModelVersionPublic) -> None:
        if body.tools and version.source != "upstream":
            raise UnsupportedFeature("tools are only supported on upstream models for now", param="tools")

    return accept


async def _cache_hit(
    body: ChatCompletionRequest,
    context: RequestContext,
    meter: Meter,
    recorder: Recorder,
    cache: cached.CacheProbe,
) -> JSONResponse | StreamingResponse:
    """A cached answer: counted for rate limits, billed its prompt tokens and 0 completion tokens
    (the response's ``usage`` is the answer's own, so clients see the same numbers as on a miss)."""
    hit = cache.hit
    assert hit is not None
    await meter.admit_tokens(body.model, hit.prompt_tokens, prompt_tokens=hit.prompt_tokens)
    meter.record(hit.prompt_tokens, 0)
    # The answer's own usage (as when it was generated); the usage record bills 0 completion tokens.
    total = hit.prompt_tokens + hit.completion_tokens
    usage = Usage(
        prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, total_tokens=total
    )
    extra = {"cache": hit.hit, "backend": hit.version, "fallback": "none"}
    headers = {
        VERSION_HEADER: hit.version,
        "x-request-id": context.request_id,
        cached.CACHE_HEADER: "hit",
        FALLBACK_HEADER: "none",
    }
    recorder.done(200)
    completion_id, created = new_id("chatcmpl"), now()
    if not body.stream:
        completion = ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[
                ChatChoice(
                    index=c.index,
                    message=ChatResponseMessage(
                        content=c.text if c.text or not c.tool_calls else None,
                        tool_calls=c.tool_calls or None,
                    ),
                    finish_reason=c.finish_reason,  # type: ignore[arg-type]
                )
                for c in hit.choices
            ],
            usage=usage,
        )
        return JSONResponse({**dump(completion), "stratum": extra}, headers=headers)

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> bytes:
        return event(
            ChatCompletionChunk(
                id=completion_id, created=created, model=body.model, choices=choices, usage=usage
            )
        )

    async def replay() -> AsyncIterator[bytes]:
        first = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[
                ChatChunkChoice(index=c.index, delta=ChatDelta(role="assistant", content=""))
                for c in hit.choices
            ],
        )
        yield event({**first.model_dump(mode="json"), "stratum": extra})
        for c in hit.choices:
            if c.text or c.tool_calls:
                yield chunk(
                    [
                        ChatChunkChoice(
                            index=c.index,
                            delta=ChatDelta(content=c.text or None, tool_calls=c.tool_calls or None),
                        )
                    ]
                )
            yield chunk([ChatChunkChoice(index=c.index, delta=ChatDelta(), finish_reason=c.finish_reason)])  # type: ignore[arg-type]
        if body.include_usage:
            yield chunk([], usage=usage)
        yield DONE

    return sse_response(replay(), headers=headers)


@contextlib.asynccontextmanager
async def _closing(generation: Generation) -> AsyncIterator[None]:
    # A client gone before the first content chunk closes this generator before
    # ``generation.stream()`` ever ran: the primed sequences must still be released.
    try:
        yield
    finally:
        await generation.close()


async def _chunks(
    body: ChatCompletionRequest,
    answer: Dispatched,
    recorder: Recorder,
    cache: cached.CacheProbe | None,
    guarded: Guarded,
) -> AsyncIterator[bytes]:
    generation = answer.generation
    completion_id, created = new_id("chatcmpl"), now()
    recorder.response_id = completion_id

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> bytes:
        return event(
            ChatCompletionChunk(
                id=completion_id, created=created, model=body.model, choices=choices, usage=usage
            )
        )

    async with recorder.streaming(), _closing(generation):
        # OpenAI opens every choice with a role-only delta; ours also says which link answers.
        first = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[
                ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content="")) for i in range(body.n)
            ],
        )
        yield event({**first.model_dump(mode="json"), "stratum": answer.extra()})
        try:
            async for index, piece in guarded.stream(generation.stream(), choices=body.n):
                if piece.text or piece.tool_calls:
                    delta = ChatDelta(
                        content=piece.text or None, tool_calls=list(piece.tool_calls or ()) or None
                    )
                    yield chunk([ChatChunkChoice(index=index, delta=delta)])
                if piece.finish_reason:
                    yield chunk(
                        [ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=piece.finish_reason)]
                    )
        except StratumError as error:
            recorder.failed(error.status_code)
            yield error_event(error)
            return
        masked = guarded.masked_copies(generation.choices)
        guarded.context.answer = masked[0].text if masked else None  # kept with the response record
        await cached.remember(cache, answer, masked)
        if body.include_usage:
            yield chunk([], usage=generation.usage())
        yield DONE
