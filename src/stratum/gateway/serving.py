"""What the inference routes do around a response for releases: pick the version a deployment
routes to, and remember which version served the response (for feedback and canary health)."""

from __future__ import annotations

from collections.abc import Callable

from stratum.gateway.deps import RequestContext
from stratum.gateway.state import AppState
from stratum.registry.responses import ServedResponse


def choose_version(
    state: AppState, context: RequestContext, model: str, *, user: str | None
) -> tuple[str, str | None]:
    """(ref to serve, deployment name or None). A/B arms stick to the end user, else to the key."""
    route = state.router.route(model, subject=user or context.principal.key_id)
    return (route.ref, route.deployment) if route is not None else (model, None)


def served_hook(
    state: AppState, context: RequestContext, *, model: str, version_ref: str, deployment: str | None
) -> Callable[[int, float, str | None], None]:
    """A callback for ``Recorder``: remembers the outcome once the response is over (no I/O)."""
    principal = context.principal
    context.model_version = version_ref

    def remember(status: int, seconds: float, response_id: str | None) -> None:
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
            )
        )

    return remember
