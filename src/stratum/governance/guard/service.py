"""The content guard per project: stored policies and word lists, compiled for the request path.

    GuardService.for_project(project_id)   the compiled guard of a project (cached for a second, so
                                            an edited policy applies within one)
    CompiledGuard.check_prompt(text)        mask/flag/raise ContentBlocked for one prompt text
    CompiledGuard.response_masker()         a StreamMasker applying the response PII policy
    GuardService.scan(text, project=...)    what the detectors find, for operators testing a policy

Findings are counted per type (``Findings``) for the audit log: never the matched text.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from stratum.errors import ContentBlocked, InvalidRequest
from stratum.governance import audit
from stratum.governance.guard.injection import injection_score
from stratum.governance.guard.pii import PII_TYPES, check_types, find_pii, replace_entities
from stratum.governance.guard.policy import (
    EntityOut,
    GuardPolicy,
    GuardPolicyUpdate,
    GuardSettings,
    ScanResult,
    WordHitOut,
    WordsChange,
)
from stratum.governance.guard.stream import StreamMasker
from stratum.governance.guard.words import MAX_WORD_CHARS, MAX_WORDS, WordList
from stratum.governance.tables import GuardPolicyRow
from stratum.governance.tenancy import find_project
from stratum.storage import Database, utcnow

DEFAULT_SCOPE = "default"
# An edited policy reaches the request path within this many seconds.
_CACHE_TTL_S = 1.0


@dataclass
class Findings:
    """What the guard saw in one request, as counts (this goes into the audit log)."""

    prompt_pii: Counter[str] = field(default_factory=Counter)
    response_pii: Counter[str] = field(default_factory=Counter)
    words: int = 0
    injection_score: float = 0.0
    actions: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.prompt_pii or self.response_pii or self.words or self.actions)

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actions": sorted(self.actions)}
        if self.prompt_pii:
            out["prompt_pii"] = dict(sorted(self.prompt_pii.items()))
        if self.response_pii:
            out["response_pii"] = dict(sorted(self.response_pii.items()))
        if self.words:
            out["words"] = self.words
        if self.injection_score:
            out["injection_score"] = self.injection_score
        return out


class CompiledGuard:
    """One project's policy and word automaton, ready for the request path (immutable)."""

    def __init__(self, policy: GuardPolicy, words: list[str]) -> None:
        self.policy = policy
        self.words = WordList(words)
        self._prompt_mask = policy.prompt_pii.types_with("mask")
        self._prompt_block = policy.prompt_pii.types_with("block")
        self._response_mask = policy.response_pii.types_with("mask")
        self._response_block = policy.response_pii.types_with("block")

    @property
    def masks_responses(self) -> bool:
        return bool(self._response_mask or self._response_block)

    def check_prompt(self, text: str, findings: Findings, *, instructions: bool = False) -> str:
        """``text`` as the model may see it; raises ContentBlocked when the policy blocks it.

        ``instructions`` marks system/developer text: the operator wrote it, so injection and
        sensitive words are not looked for there (PII still is).
        """
        policy = self.policy
        watched = self._prompt_mask | self._prompt_block
        entities = find_pii(text, watched) if watched else []
        for entity in entities:
            findings.prompt_pii[entity.type] += 1
            if entity.type in self._prompt_block:
                findings.actions.add("block")
                raise ContentBlocked(
                    f"the prompt contains a {entity.type} number, which this project does not allow",
                    rule=f"guard.pii.{entity.type}",
                )
        if entities:
            findings.actions.add("mask")
            text = replace_entities(text, entities)
        if instructions:
            return text
        if policy.injection != "off":
            scored = injection_score(text)
            findings.injection_score = max(findings.injection_score, scored.score)
            if scored.score >= policy.injection_threshold:
                signals = ", ".join(s.name for s in scored.signals)
                if policy.injection == "block":
                    findings.actions.add("block")
                    raise ContentBlocked(
                        f"the prompt looks like a prompt-injection attempt (score {scored.score:.2f}: "
                        f"{signals})",
                        rule="guard.injection",
                    )
                findings.actions.add("flag")
        hits = self.words.find(text)
        if hits:
            findings.words += len(hits)
            if policy.words_action == "block":
                findings.actions.add("block")
                raise ContentBlocked(
                    f"the prompt contains the sensitive word {hits[0].word!r}", rule="guard.words"
                )
            if policy.words_action == "mask":
                findings.actions.add("mask")
                text = self.words.mask(text, hits)
            else:
                findings.actions.add("flag")
        return text

    def response_masker(self) -> StreamMasker:
        return StreamMasker(types=self._response_mask, blocked=self._response_block)


def _policy(row: GuardPolicyRow | None) -> GuardPolicy:
    return GuardPolicy.model_validate(row.policy) if row is not None else GuardPolicy()


def _clean_words(words: list[str]) -> list[str]:
    cleaned = []
    for word in words:
        word = word.strip()
        if not word:
            continue
        if len(word) > MAX_WORD_CHARS:
            raise InvalidRequest(f"a sensitive word has at most {MAX_WORD_CHARS} characters", param="add")
        cleaned.append(word)
    return cleaned


class GuardService:
    """Serves: the gateway's request path (``for_project``), ``/admin/v1/.../guard`` and
    ``/admin/v1/guard/scan``, and ``stratum guard``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, CompiledGuard]] = {}
        self._lock = threading.Lock()

    # --- the request path ---

    def for_project(self, project_id: str | None) -> CompiledGuard:
        scope = project_id or DEFAULT_SCOPE
        now = time.monotonic()
        cached = self._cache.get(scope)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._db.session(write=False) as session:
            row = session.get(GuardPolicyRow, scope)
            if row is None and scope != DEFAULT_SCOPE:
                row = session.get(GuardPolicyRow, DEFAULT_SCOPE)
            compiled = CompiledGuard(_policy(row), list(row.words) if row is not None else [])
        with self._lock:
            self._cache[scope] = (now + _CACHE_TTL_S, compiled)
        return compiled

    # --- administration ---

    def _scope(self, session: Any, project: str | None) -> tuple[str, str | None, str | None]:
        """(scope, org_id, project_id) of ``ORG/PROJECT`` or of the platform default."""
        if project is None:
            return DEFAULT_SCOPE, None, None
        org_row, project_row = find_project(session, project)
        return project_row.id, org_row.id, project_row.id

    def get(self, project: str | None = None) -> GuardSettings:
        with self._db.session(write=False) as session:
            scope, _, _ = self._scope(session, project)
            row = session.get(GuardPolicyRow, scope)
            if row is None and scope != DEFAULT_SCOPE:
                row = session.get(GuardPolicyRow, DEFAULT_SCOPE)
            words = sorted(row.words) if row is not None else []
            return GuardSettings(project=project or DEFAULT_SCOPE, policy=_policy(row), words=words)

    def update_policy(
        self, project: str | None, update: GuardPolicyUpdate, *, actor: str = audit.LOCAL_ACTOR
    ) -> GuardSettings:
        """Change the fields given; the rest keep their value (or the default)."""
        for section in (update.prompt_pii, update.response_pii):
            if section is not None:
                check_types(section.keys())
        with self._db.session() as session:
            scope, org_id, project_id = self._scope(session, project)
            row = self._row(session, scope)
            current = _policy(row).model_dump()
            change = update.model_dump(exclude_none=True)
            for name in ("prompt_pii", "response_pii"):
                if name in change:
                    current[name] = {**current[name], **change.pop(name)}
            current.update(change)
            policy = GuardPolicy.model_validate(current)
            row.policy = policy.model_dump()
            row.updated_at = utcnow()
            audit.append(
                session,
                actor=actor,
                action="guard.policy",
                target=project or DEFAULT_SCOPE,
                org_id=org_id,
                project_id=project_id,
                detail=update.model_dump(exclude_none=True),
            )
            words = sorted(row.words)
        self._forget(scope)
        return GuardSettings(project=project or DEFAULT_SCOPE, policy=policy, words=words)

    def change_words(
        self, project: str | None, change: WordsChange, *, actor: str = audit.LOCAL_ACTOR
    ) -> GuardSettings:
        added, removed = _clean_words(change.add), set(_clean_words(change.remove))
        with self._db.session() as session:
            scope, org_id, project_id = self._scope(session, project)
            row = self._row(session, scope)
            words = (set(row.words) | set(added)) - removed
            if len(words) > MAX_WORDS:
                raise InvalidRequest(f"a project has at most {MAX_WORDS} sensitive words", param="add")
            row.words = sorted(words)
            row.updated_at = utcnow()
            # Counts only: the words themselves may be what the audit reader should not see.
            audit.append(
                session,
                actor=actor,
                action="guard.words",
                target=project or DEFAULT_SCOPE,
                org_id=org_id,
                project_id=project_id,
                detail={"added": len(added), "removed": len(removed), "total": len(words)},
            )
            policy = _policy(row)
        self._forget(scope)
        return GuardSettings(project=project or DEFAULT_SCOPE, policy=policy, words=sorted(words))

    def _row(self, session: Any, scope: str) -> GuardPolicyRow:
        row = session.get(GuardPolicyRow, scope)
        if row is None:
            row = GuardPolicyRow(scope=scope, policy=GuardPolicy().model_dump(), words=[])
            session.add(row)
        return row

    def _forget(self, scope: str) -> None:
        with self._lock:
            if scope == DEFAULT_SCOPE:
                self._cache.clear()
            else:
                self._cache.pop(scope, None)

    # --- scanning ---

    def scan(
        self, text: str, *, project: str | None = None, types: Collection[str] | None = None
    ) -> ScanResult:
        """Everything the detectors find in ``text`` and what ``project``'s policy would do with it
        as a prompt (``decision``: allow, mask, flag or block, with the blocking rule)."""
        wanted = check_types(types) if types is not None else PII_TYPES
        settings = self.get(project)
        guard = CompiledGuard(settings.policy, settings.words)
        entities = find_pii(text, wanted)
        hits = guard.words.find(text)
        masked = replace_entities(text, entities)
        if hits:
            masked = guard.words.mask(masked)
        scored = injection_score(text)
        findings = Findings()
        decision, rule = "allow", None
        try:
            guard.check_prompt(text, findings)
        except ContentBlocked as blocked:
            decision, rule = "block", blocked.rule
        else:
            for action in ("flag", "mask"):
                if action in findings.actions:
                    decision = action
                    break
        return ScanResult(
            entities=[EntityOut(type=e.type, start=e.start, end=e.end, text=e.text) for e in entities],
            masked=masked,
            words=[WordHitOut(word=h.word, start=h.start, end=h.end) for h in hits],
            injection_score=scored.score,
            injection_signals=[s.name for s in scored.signals],
            decision=decision,
            actions=sorted(findings.actions),
            rule=rule,
        )
