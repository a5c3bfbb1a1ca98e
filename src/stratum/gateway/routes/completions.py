"""``POST /v1/completions`` (legacy text completions; batch prompts become one choice per prompt × n)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from stratum.engine.base import GenerationRequest
from stratum.errors import StratumError, UnsupportedFeature
from stratum.gateway.deps import ContextDep, Permit, StateDep
from stratum.gateway.dispatch import dispatch
from stratum.gateway.generation import Generation, sampling_params
from stratum.gateway.guarding import Guarded
from stratum.gateway.metering import CompletionsMeter
from stratum.gateway.routes.streaming import Recorder, sse_response
from stratum.gateway.serving import answered, choose_version, served_hook
from stratum.gateway.sse import DONE, error_event, event
from stratum.protocol.base import Usage, dump, new_id, now
from stratum.protocol.completions import Completion, CompletionChoice, CompletionRequest

router = APIRouter(tags=["openai"])


def _prompts(body: CompletionRequest) -> list[str]:
    prompt = body.prompt
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, str) for p in prompt):
        return [str(p) for p in prompt]
    raise UnsupportedFeature("token-id prompts are not supported; send text", param="prompt")


@router.post("/v1/completions", response_model=Completion, dependencies=[Permit("completions")])
async def create_completion(
    body: CompletionRequest, context: ContextDep, state: StateDep, meter: CompletionsMeter
) -> JSONResponse | StreamingResponse:
    recorder = Recorder(state.metrics, endpoint="completions", model=body.model, started=context.started)
    try:
        if body.suffix:
            raise UnsupportedFeature("suffix (fill-in-the-middle) is not supported", param="suffix")
        guarded = await Guarded.open(state, context, meter)
        prompts = await guarded.prompts(_prompts(body))
        # A deployment (canary / A-B) picks the version; otherwise the name goes to its route as is.
        target, deployment = choose_version(state, context, body.model, user=getattr(body, "user", None))
        if deployment is not None:
            recorder.on_done = served_hook(
                state, context, model=body.model, version_ref=target, deployment=deployment
            )
        requests = [
            GenerationRequest(
                request_id=f"{context.request_id}/{p}.{i}",
                params=sampling_params(body, max_tokens=body.max_tokens or 16, choice=i),
                prompt=prompt,
                deadline_s=state.settings.request_timeout,
            )
            for p, prompt in enumerate(prompts)
            for i in range(body.n)
        ]
        answer = await dispatch(
            state,
            context,
            meter,
            model=target,
            requests=requests,
            prompt_of=[p for p in range(len(prompts)) for _ in range(body.n)],
        )
        generation = answer.generation
        headers = answered(state, context, recorder, answer, model=body.model, deployment=deployment)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    echo = [prompt for prompt in prompts for _ in range(body.n)] if body.echo else None
    if body.stream:
        return sse_response(_chunks(body, generation, recorder, echo, guarded), headers=headers)
    try:
        choices = await generation.collect()
        guarded.choices(choices)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    recorder.response_id = new_id("cmpl")
    recorder.done(200)
    completion = Completion(
        id=recorder.response_id,
        created=now(),
        model=body.model,
        choices=[
            CompletionChoice(
                index=c.index, text=(echo[c.index] if echo else "") + c.text, finish_reason=c.finish_reason
            )
            for c in choices
        ],
        usage=generation.usage(),
    )
    return JSONResponse(dump(completion), headers=headers)


async def _chunks(
    body: CompletionRequest,
    generation: Generation,
    recorder: Recorder,
    echo: list[str] | None,
    guarded: Guarded,
) -> AsyncIterator[bytes]:
    completion_id, created = new_id("cmpl"), now()
    recorder.response_id = completion_id

    def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> bytes:
        return event(
            Completion(id=completion_id, created=created, model=body.model, choices=choices, usage=usage)
        )

    async with recorder.streaming():
        if echo:
            yield chunk(
                [CompletionChoice(index=i, text=text, finish_reason=None) for i, text in enumerate(echo)]
            )
        try:
            async for index, piece in guarded.stream(generation.stream(), choices=len(generation.requests)):
                yield chunk(
                    [CompletionChoice(index=index, text=piece.text, finish_reason=piece.finish_reason)]
                )
        except StratumError as error:
            recorder.failed(error.status_code)
            yield error_event(error)
            return
        if body.include_usage:
            yield chunk([], usage=generation.usage())
        yield DONE
