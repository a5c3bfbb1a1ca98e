"""``POST /v1/chat/completions``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from stratum.engine.base import GenerationRequest
from stratum.errors import StratumError, UnsupportedFeature
from stratum.gateway.deps import ContextDep, Permit, StateDep
from stratum.gateway.generation import Generation, sampling_params
from stratum.gateway.metering import ChatMeter
from stratum.gateway.routes.streaming import VERSION_HEADER, Recorder, sse_response
from stratum.gateway.serving import text_engine_for
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
    recorder = Recorder(state.metrics, endpoint="chat", model=body.model, started=context.started)
    try:
        version, engine = await text_engine_for(state, context, recorder, body.model, user=body.user)
        if body.tools and version.source != "upstream":
            raise UnsupportedFeature("tools are only supported on upstream models for now", param="tools")
        sent = body.model_dump(exclude_none=True)  # includes unknown fields the client sent
        passthrough = {k: sent[k] for k in _PASSTHROUGH if k in sent}
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
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
        generation = Generation(engine, requests, model=version.name, metrics=state.metrics)
        await meter.admit(generation)
        generation.start()
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    headers = {VERSION_HEADER: version.ref, "x-request-id": context.request_id}
    if body.stream:
        return sse_response(_chunks(body, generation, recorder), headers=headers)
    try:
        choices = await generation.collect()
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    recorder.response_id = new_id("chatcmpl")
    recorder.done(200)
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
    return JSONResponse(dump(completion), headers=headers)


async def _chunks(
    body: ChatCompletionRequest, generation: Generation, recorder: Recorder
) -> AsyncIterator[bytes]:
    completion_id, created = new_id("chatcmpl"), now()
    recorder.response_id = completion_id

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> bytes:
        return event(
            ChatCompletionChunk(
                id=completion_id, created=created, model=body.model, choices=choices, usage=usage
            )
        )

    async with recorder.streaming():
        # OpenAI opens every choice with a role-only delta.
        yield chunk(
            [ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content="")) for i in range(body.n)]
        )
        try:
            async for index, piece in generation.stream():
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
        if body.include_usage:
            yield chunk([], usage=generation.usage())
        yield DONE
