"""``model: "db/<name>"`` on ``/v1/chat/completions``: answer a question over a registered database.

The connection's own generator model writes one SQL query from the schema prompt; the query is
checked and rewritten by the guard and run read-only (``stratum.knowledge.sql``). The answer's
content shows the executed SQL and the result as a Markdown table, and the response carries the
same data machine-readably in the extension field ``stratum_sql`` (``SQLAnswer``): on the
completion object, or on the last chunk when streaming. SQL the guard rejects is not an error of
the client: the answer is a 200 whose content and ``stratum_sql.rejected`` give the reason.

The key must belong to a project (connections are per project); its role selects the row filters.
The generation is metered like any chat request on the generator model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi.responses import JSONResponse, StreamingResponse

from stratum.engine.base import GenerationRequest
from stratum.errors import InvalidRequest, StratumError
from stratum.gateway.deps import RequestContext
from stratum.gateway.generation import Generation, sampling_params
from stratum.gateway.metering import Meter
from stratum.gateway.routes.streaming import VERSION_HEADER, Recorder, sse_response
from stratum.gateway.sse import DONE, event
from stratum.gateway.state import AppState
from stratum.knowledge.sql.executor import SQLRejected
from stratum.knowledge.sql.qa import answer_text, build_messages, extract_sql, last_question
from stratum.knowledge.sql.schemas import SQLAnswer
from stratum.protocol.base import new_id, now
from stratum.protocol.chat import ChatCompletionRequest

PREFIX = "db/"
EXTENSION_FIELD = "stratum_sql"


def is_database_model(model: str) -> bool:
    return model.startswith(PREFIX)


async def database_chat(
    body: ChatCompletionRequest, context: RequestContext, state: AppState, meter: Meter
) -> JSONResponse | StreamingResponse:
    recorder = Recorder(state.metrics, endpoint="chat", model=body.model, started=context.started)
    try:
        answer, generation, ref = await _answer(body, context, state, meter)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    headers = {VERSION_HEADER: ref, "x-request-id": context.request_id}
    content = answer_text(answer)
    usage = generation.usage().model_dump()
    completion_id, created = new_id("chatcmpl"), now()
    if body.stream:
        return sse_response(
            _stream(body, completion_id, created, content, answer, usage, recorder), headers=headers
        )
    recorder.done(200)
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage,
        EXTENSION_FIELD: answer.model_dump(mode="json"),
    }
    return JSONResponse(payload, headers=headers)


async def _answer(
    body: ChatCompletionRequest, context: RequestContext, state: AppState, meter: Meter
) -> tuple[SQLAnswer, Generation, str]:
    name = body.model.removeprefix(PREFIX)
    project = context.principal.project
    if project is None:
        raise InvalidRequest(
            "db/ models are per project: use a key of the project the database is registered in",
            param="model",
        )
    if body.n != 1:
        raise InvalidRequest("db/ models answer with one choice (n=1)", param="n")
    databases = state.databases
    conn = await anyio.to_thread.run_sync(
        lambda: databases.connection(project_id=project.id, project_path=project.name, name=name)
    )
    # The generator is a model like any other: the key's scopes and the rules apply to it too.
    await context.authorize("chat", model=conn.public.model)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    question = last_question(messages)
    if not question:
        raise InvalidRequest("ask a question in a user message", param="messages")
    role = context.principal.role
    schema = await anyio.to_thread.run_sync(lambda: databases.schema_prompt(conn, role=role))
    version, engine = await state.pool.text_engine(conn.public.model)
    params = sampling_params(body, max_tokens=body.token_limit() or 512, choice=0)
    if body.temperature is None:  # SQL wants the most likely query, not a creative one
        params = dataclasses.replace(params, temperature=0.0)
    request = GenerationRequest(
        request_id=f"{context.request_id}/0",
        params=params,
        messages=build_messages(schema, question, history=messages[:-1]),
        deadline_s=state.settings.request_timeout,
    )
    generation = Generation(engine, [request], model=version.name, metrics=state.metrics)
    await meter.admit(generation)
    generation.start()
    choices = await generation.collect()
    sql = extract_sql(choices[0].text)
    try:
        answer = await anyio.to_thread.run_sync(lambda: databases.run(conn, sql, role=role))
    except SQLRejected as rejected:
        answer = SQLAnswer(database=conn.public.name, rejected=rejected.message)
    answer.question, answer.generated_sql = question, sql
    return answer, generation, version.ref


async def _stream(
    body: ChatCompletionRequest,
    completion_id: str,
    created: int,
    content: str,
    answer: SQLAnswer,
    usage: dict[str, Any],
    recorder: Recorder,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return event(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    async with recorder.streaming():
        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": content})
        yield chunk({}, "stop", **{EXTENSION_FIELD: answer.model_dump(mode="json")})
        if body.include_usage:
            yield event(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body.model,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield DONE
