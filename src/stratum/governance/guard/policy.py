"""A project's content-guard policy: what to do with PII, sensitive words and injection attempts.

Default for a new project (``GuardPolicy()``), chosen to protect without breaking ordinary use:

    prompt and response PII   id_card, bank_card, passport, phone: mask; email, ipv4: allow
                              (addresses and IPs are routine in support and ops prompts)
    sensitive words           none listed; a listed word in a prompt blocks it (responses: not checked)
    prompt injection          flag (recorded in the audit log) at score >= 0.7, not blocked:
                              a heuristic should not refuse paying users until an operator opts in

Actions. PII: ``mask`` (the model sees / the client gets ``[TYPE]``), ``block`` (a prompt is
refused with 400 ``content_blocked``; a response stops at the entity with finish_reason
``content_filter``), ``allow``. Words: ``block``, ``flag`` (audit only), ``mask`` (``***``).
Injection: ``block``, ``flag``, ``off``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stratum.governance.guard.pii import BANK_CARD, EMAIL, ID_CARD, IPV4, PASSPORT, PHONE

PiiAction = Literal["mask", "block", "allow"]
WordsAction = Literal["block", "flag", "mask"]
InjectionAction = Literal["block", "flag", "off"]


class PiiPolicy(BaseModel):
    """One action per PII type."""

    model_config = ConfigDict(extra="forbid")

    id_card: PiiAction = "mask"
    phone: PiiAction = "mask"
    bank_card: PiiAction = "mask"
    email: PiiAction = "allow"
    ipv4: PiiAction = "allow"
    passport: PiiAction = "mask"

    def types_with(self, action: str) -> frozenset[str]:
        return frozenset(
            t for t in (ID_CARD, PHONE, BANK_CARD, EMAIL, IPV4, PASSPORT) if getattr(self, t) == action
        )


class GuardPolicy(BaseModel):
    """Everything the guard does for one project (the words themselves are kept separately)."""

    model_config = ConfigDict(extra="forbid")

    prompt_pii: PiiPolicy = Field(default_factory=PiiPolicy, description="PII in prompts.")
    response_pii: PiiPolicy = Field(default_factory=PiiPolicy, description="PII in responses.")
    words_action: WordsAction = Field(default="block", description="What a sensitive word in a prompt does.")
    injection: InjectionAction = "flag"
    injection_threshold: float = Field(default=0.7, ge=0.0, le=1.0)


class GuardPolicyUpdate(BaseModel):
    """A partial change: only the fields given change (PII types within a section too)."""

    model_config = ConfigDict(extra="forbid")

    prompt_pii: dict[str, PiiAction] | None = None
    response_pii: dict[str, PiiAction] | None = None
    words_action: WordsAction | None = None
    injection: InjectionAction | None = None
    injection_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class GuardSettings(BaseModel):
    """A project's policy with its sensitive words, as the admin API shows it."""

    project: str
    policy: GuardPolicy
    words: list[str]


class WordsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class ScanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000)
    project: str | None = Field(default=None, description="ORG/PROJECT whose policy and words apply.")
    types: list[str] | None = Field(default=None, description="PII types to look for (default: all).")


class EntityOut(BaseModel):
    type: str
    start: int
    end: int
    text: str


class WordHitOut(BaseModel):
    word: str
    start: int
    end: int


class ScanResult(BaseModel):
    """What the guard finds in a text; ``masked`` masks every PII entity found and listed words."""

    entities: list[EntityOut]
    masked: str
    words: list[WordHitOut]
    injection_score: float
    injection_signals: list[str]
    # What the project's policy would do with this text as a prompt: block (with the rule), else
    # flag, else mask, else allow; ``actions`` lists every action it would take.
    decision: str
    actions: list[str]
    rule: str | None = None
