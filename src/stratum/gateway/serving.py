"""What the inference routes do around a response for releases: pick the version a deployment
routes to, and remember which version served the response (for feedback and canary health)."""

from __future__ import annotations

from collections.abc import Callable

from stratum.engine.base import TextEngine
from stratum.gateway.deps import RequestContext
from stratum.gateway.dispatch import Dispatched
from stratum.gateway.routes.streaming import VERSION_HEADER, Recorder
from stratum.gateway.state import AppState
from stratum.registry.responses import ServedResponse
from stratum.registry.schemas import ModelVersionPublic


async def text_engine_for(
    state: AppState, context: RequestContext, recorder: Recorder, model: str, *, user: str | None
) -> tuple[ModelVersionPublic, TextEngine]:
    """The version and engine serving ``model`` for this request, with its outcome recorded.

    A deployment's choice is recorded before the engine loads, so a candidate that cannot even load
    counts as failing in the canary's numbers.
    """
    ref, deployment = choose_version(state, context, model, user=user)
    if deployment is not None:
        recorder.on_done = served_hook(state, context, model=model, version_ref=ref, deployment=deployment)
    version, engine = await state.pool.text_engine(ref)
    recorder.on_done = served_hook(
        state, context, model=model, version_ref=version.ref, deployment=deployment
    )
    return version, engine


def choose_version(
    state: AppState, context: RequestContext, model: str, *, user: str | None
) -> tuple[str, str | None]:
    """(ref to serve, deployment name or None). A/B arms stick to the end user, else to the key.

    A deployment's refs are exact versions (``NAME@V``), so the ref is the version that serves.
    """
    route = state.router.route(model, subject=user or context.principal.key_id)
    return (route.ref, route.deployment) if route is not None else (model, None)


def served_hook(
    state: AppState, context: RequestContext, *, model: str, version_ref: str, deployment: str | None
) -> Callable[[int, float, str | None], None]:
    """A callback for ``Recorder``: remembers the outcome once the response is over (no I/O)."""
    principal = context.principal
    context.model_version = version_ref
    keep_prompt = state.settings.feedback_prompts

    def remember(status: int, seconds: float, response_id: str | None) -> None:
        # Read when the response is over: the route sets the masked answer just before.
        kept = keep_prompt and status < 400
        state.responses.remember(
            ServedResponse(
                request_id=context.request_id[:64],
                model=model[:160],
                version_ref=version_ref,
                status=status,
                latency_ms=seconds * 1000,
                response_id=response_id if status < 400 else None,
                deployment=deployment,
                key_id=principal.key_id,
                org_id=principal.org.id if principal.org else None,
                project_id=principal.project.id if principal.project else None,
                prompt=context.prompt if kept else None,
                answer=context.answer if kept else None,
            )
        )

    return remember


def as_failure(hook: Callable[[int, float, str | None], None]) -> Callable[[int, float, str | None], None]:
    """The deployed version failed even though a fallback link answered the client: the canary and
    the A/B numbers must see the failure, not the fallback's success."""

    def remember(status: int, seconds: float, response_id: str | None) -> None:
        hook(502 if status < 400 else status, seconds, None)

    return remember


def answered(
    state: AppState,
    context: RequestContext,
    recorder: Recorder,
    answer: Dispatched,
    *,
    model: str,
    deployment: str | None,
) -> dict[str, str]:
    """Record which version answered a dispatched request; returns the response headers saying so.

    A deployed version that a fallback link replaced counts as failing; without a deployment,
    feedback on the response id is attributed to the version that produced it.
    """
    if deployment is not None and answer.link != "none" and recorder.on_done is not None:
        recorder.on_done = as_failure(recorder.on_done)
    if deployment is None and answer.version is not None:
        recorder.on_done = served_hook(
            state, context, model=model, version_ref=answer.version.ref, deployment=None
        )
    served = answer.version.ref if answer.version else answer.link
    return {VERSION_HEADER: served, "x-request-id": context.request_id, **answer.headers()}
