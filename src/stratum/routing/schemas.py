"""Wire/service types of routing: routes, fallback links, responder rules, hand-off tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What makes the next link of a chain answer. ``content_blocked`` is raised by the safety guard.
Trigger = Literal["error", "timeout", "saturation", "content_blocked"]
ALL_TRIGGERS: tuple[Trigger, ...] = ("error", "timeout", "saturation", "content_blocked")
_NAME = r"^[A-Za-z0-9_.:@/\-]{1,160}$"


class Backend(BaseModel):
    """One backend of a route: a registry model reference (local engine or upstream)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=_NAME, description="Registry reference: NAME, NAME@V or NAME:ALIAS.")
    priority: int = Field(default=0, ge=0, le=100, description="Lower is tried first; bursts go up.")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic within its priority.")


class FallbackLink(BaseModel):
    """One link of a fallback chain: another model, the rule responder, or a person."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["model", "rules", "human"]
    target: str | None = Field(default=None, pattern=_NAME, description="The model, for kind=model.")

    @model_validator(mode="after")
    def _target(self) -> FallbackLink:
        if (self.kind == "model") != (self.target is not None):
            raise ValueError("a 'model' link names its target model; 'rules' and 'human' take none")
        return self

    @property
    def label(self) -> str:
        return f"model:{self.target}" if self.kind == "model" else self.kind


class Route(BaseModel):
    """How a served model name is answered (``PUT /admin/v1/routes/{model}``).

    Backends are tried by priority (weighted pick within one priority); the first priority is left
    for the next while a local engine's queue is longer than ``burst_queue``. When every backend
    failed with one of ``triggers``, the fallback links answer in order.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=_NAME)
    backends: list[Backend] = Field(
        default_factory=list, description="Empty: the registry model of the same name is the backend."
    )
    fallback: list[FallbackLink] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=lambda: list(ALL_TRIGGERS))
    burst_queue: int | None = Field(
        default=None, ge=0, description="Queue length that bursts; unset: STRATUM_BURST_QUEUE."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="First-token timeout; unset: STRATUM_FALLBACK_TIMEOUT."
    )
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _links(self) -> Route:
        kinds = [link.kind for link in self.fallback]
        if len(set(kinds) - {"model"}) != len([k for k in kinds if k != "model"]):
            raise ValueError("'rules' and 'human' appear at most once in a fallback chain")
        if "human" in kinds and kinds[-1] != "human":
            raise ValueError("the human hand-off is the last link of a chain (it always answers)")
        return self


class ResponderRule(BaseModel):
    """A templated answer for requests matching keywords (Chinese matched as substrings)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    intent: str | None = Field(default=None, max_length=64, description="A label, e.g. refund.")
    keywords: list[str] = Field(min_length=1, description="Matched case-insensitively as substrings.")
    match: Literal["any", "all"] = "any"
    template: str = Field(
        min_length=1,
        max_length=8000,
        description="Jinja template; variables: question, model, intent, keywords (the matched ones).",
    )
    models: list[str] = Field(default_factory=list, description="Model-name globs; empty: all models.")
    priority: int = Field(default=0, description="Higher wins among rules matching equally well.")
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _keywords(self) -> ResponderRule:
        self.keywords = [k.strip() for k in self.keywords if k.strip()]
        if not self.keywords:
            raise ValueError("a rule needs at least one non-blank keyword")
        return self


TicketStatus = Literal["open", "answered"]


class Ticket(BaseModel):
    """A request handed to a person, and the person's answer once given."""

    id: str
    model: str
    status: TicketStatus
    reason: str
    question: str
    messages: list[dict[str, object]] = Field(default_factory=list)
    answer: str | None = None
    answered_by: str | None = None
    created_at: datetime
    answered_at: datetime | None = None
    project_id: str | None = None


class TicketAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=32000)
