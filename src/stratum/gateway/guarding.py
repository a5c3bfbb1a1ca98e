"""The content guard around one inference request (policy in ``governance.guard``).

    guard = await Guarded.open(state, context, meter)     the caller's project policy
    messages = await guard.chat_messages(messages)         masked, or ContentBlocked (400)
    prompts = await guard.prompts(prompts)
    async for index, piece in guard.stream(generation.stream()):   responses masked across chunks
    guard.choices(choices)                                          non-streamed responses masked

What was found (type counts and actions, never the text) rides on the request's ``Meter`` into its
audit entry; a blocked prompt, which never reaches the meter's settlement, is written as its own
``guard.block`` entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import anyio

from stratum.engine.base import GenerationChunk
from stratum.errors import ContentBlocked
from stratum.gateway.deps import RequestContext
from stratum.gateway.generation import ChoiceResult
from stratum.gateway.metering import Meter
from stratum.gateway.state import AppState
from stratum.governance.audit_writer import AuditEvent
from stratum.governance.guard.service import CompiledGuard, Findings
from stratum.governance.guard.stream import StreamMasker

# Chat roles whose text the operator wrote: checked for PII, not for injection or sensitive words.
_INSTRUCTION_ROLES = ("system", "developer")


class Guarded:
    def __init__(self, state: AppState, context: RequestContext, meter: Meter, guard: CompiledGuard) -> None:
        self.state, self.context, self.meter, self.guard = state, context, meter, guard
        self.findings = Findings()
        meter.findings = self.findings

    @classmethod
    async def open(cls, state: AppState, context: RequestContext, meter: Meter) -> Guarded:
        project = context.principal.project
        guard = await anyio.to_thread.run_sync(state.guard.for_project, project.id if project else None)
        return cls(state, context, meter, guard)

    async def chat_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self._checked(lambda: [self._message(m) for m in messages])

    async def prompts(self, prompts: list[str]) -> list[str]:
        return await self._checked(lambda: [self.guard.check_prompt(p, self.findings) for p in prompts])

    async def _checked(self, check: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(check)
        except ContentBlocked as blocked:
            self._record_block(blocked)
            raise

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        instructions = message.get("role") in _INSTRUCTION_ROLES
        content = message.get("content")
        if isinstance(content, str):
            return {
                **message,
                "content": self.guard.check_prompt(content, self.findings, instructions=instructions),
            }
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    text = self.guard.check_prompt(part["text"], self.findings, instructions=instructions)
                    part = {**part, "text": text}
                parts.append(part)
            return {**message, "content": parts}
        return message

    def _record_block(self, blocked: ContentBlocked) -> None:
        principal = self.context.principal
        self.state.audit_writer.submit(
            AuditEvent(
                actor=principal.key_id,
                action="guard.block",
                target=self.meter.endpoint,
                org_id=principal.org.id if principal.org else None,
                project_id=principal.project.id if principal.project else None,
                detail={
                    "request_id": self.context.request_id[:64],
                    "rule": blocked.rule,
                    **self.findings.detail(),
                },
            )
        )

    def _count(self, masker: StreamMasker) -> None:
        for entity in masker.entities:
            self.findings.response_pii[entity.type] += 1
        if masker.entities:
            self.findings.actions.add("mask")
        if masker.hit_block is not None:
            self.findings.response_pii[masker.hit_block.type] += 1
            self.findings.actions.add("block")

    def choices(self, choices: list[ChoiceResult]) -> None:
        """Mask (or cut at a blocked entity) each collected choice's text in place."""
        if not self.guard.masks_responses:
            return
        for choice in choices:
            masker = self.guard.response_masker()
            choice.text = masker.feed(choice.text) + masker.finish()
            if masker.hit_block is not None:
                choice.finish_reason = "content_filter"
            self._count(masker)

    async def stream(
        self, pieces: AsyncIterator[tuple[int, GenerationChunk]], *, choices: int
    ) -> AsyncIterator[tuple[int, GenerationChunk]]:
        """The pieces with PII masked; text that may be part of an entity waits for the next piece.

        A choice cut by a blocked entity ends with finish_reason ``content_filter``; once every
        choice is finished the generation is closed.
        """
        if not self.guard.masks_responses:
            async for item in pieces:
                yield item
            return
        maskers: dict[int, StreamMasker] = {}
        cut: set[int] = set()
        finished: set[int] = set()
        async for index, piece in pieces:
            if index in cut:
                continue
            masker = maskers.get(index)
            if masker is None:
                masker = maskers[index] = self.guard.response_masker()
            text = masker.feed(piece.text) if piece.text else ""
            if masker.hit_block is not None:
                cut.add(index)
                self._count(masker)
                yield (
                    index,
                    dataclasses.replace(piece, text=text, finish_reason="content_filter", tool_calls=None),
                )
                if len(cut | finished) == choices:
                    return  # closes the generation: nothing more would be sent
                continue
            if piece.finish_reason is not None:
                text += masker.finish()
                finished.add(index)
                self._count(masker)
            if text or piece.finish_reason is not None or piece.tool_calls:
                yield index, dataclasses.replace(piece, text=text)
        for index, masker in maskers.items():
            if index in cut or index in finished:
                continue
            # A choice that ended without a finish reason: release what is held, masked.
            rest = masker.finish()
            self._count(masker)
            if rest:
                yield index, GenerationChunk(text=rest, prompt_tokens=0, completion_tokens=0)
