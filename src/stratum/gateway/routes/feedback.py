"""``POST /v1/feedback``: a score or thumbs (and optionally a correction) on one response."""

from __future__ import annotations

import logging
from typing import Literal

import anyio
from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from stratum.gateway.deps import ContextDep, StateDep
from stratum.protocol.base import new_id
from stratum.registry.feedback import FeedbackPublic

log = logging.getLogger(__name__)
router = APIRouter(tags=["feedback"])


class FeedbackCreate(BaseModel):
    # Unknown fields are accepted and ignored, like the OpenAI routes.
    model_config = ConfigDict(extra="allow")

    response_id: str = Field(min_length=1, max_length=64, description="The id of a chat completion.")
    score: float | None = Field(default=None, description="0 (bad) to 1 (good).")
    thumbs: Literal["up", "down"] | None = None
    correction: str | None = Field(default=None, description="What the answer should have been.")
    comment: str | None = None


@router.post("/v1/feedback", response_model=FeedbackPublic, status_code=status.HTTP_201_CREATED)
async def create_feedback(body: FeedbackCreate, context: ContextDep, state: StateDep) -> FeedbackPublic:
    """Rate a response served to your project; it is stored with the version that served it."""
    if body.model_extra:
        log.debug("ignoring unknown fields %s", sorted(body.model_extra))
    await context.authorize("chat")
    principal = context.principal
    return await anyio.to_thread.run_sync(
        lambda: state.feedback.submit(
            response_id=body.response_id,
            score=body.score,
            thumbs=body.thumbs,
            correction=body.correction,
            comment=body.comment,
            key_id=principal.key_id,
            org_id=principal.org.id if principal.org else None,
            project_id=principal.project.id if principal.project else None,
            is_admin=principal.is_admin,
            feedback_id=new_id("fb"),
        )
    )
