"""Masking a streamed response: PII split across chunks is still found.

``StreamMasker.feed(piece)`` returns the text that is safe to send now; it holds back only the
shortest tail that could still become (or extend) an entity of the types it masks: a trailing run
of digits with their separators (``138 1234``, ``1101051949``), a capital letter or two that may
start a passport number, and — only when emails are masked — the trailing word that may still turn
into an address. An entity that ends exactly at the end of the buffer is held too: the next
character decides whether ``13812345678`` is a phone or the start of a 12-digit number.
``finish()`` releases (masked) whatever is left at the end of the stream.

Detection runs on the last few characters already sent plus the held text, so context patterns
("护照号码：" before a number that arrives in the next chunk) still apply; entities starting in the
already-sent context are not touched again.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from stratum.governance.guard.pii import EMAIL, Entity, find_pii, replace_entities

# Characters of already-sent text kept as context for the next round (covers "passport number: ").
_CONTEXT_CHARS = 24
# Longest tail held back: 19-digit cards with separators and "+86 " phones fit in 32; emails in 128.
_MAX_HOLD = 32
_MAX_HOLD_EMAIL = 128
_DIGIT_TAIL = re.compile(r"(?:(?:\+|00)?\d[\d \-.Xx()+]*|\+|\(\+?)$")
_PASSPORT_TAIL = re.compile(r"(?<![0-9A-Za-z])[A-Z]{1,2}\d{0,8}$")
_EMAIL_TAIL = re.compile(r"[A-Za-z0-9._%+\-@]+$")


@dataclass
class StreamMasker:
    """Incremental ``mask_pii`` for one stream (one choice). ``blocked`` types stop the stream."""

    types: Collection[str]
    blocked: Collection[str] = ()
    _buffer: str = ""
    _context: str = ""
    entities: list[Entity] = field(default_factory=list)
    # Set when a blocked type was found: the stream must end (finish_reason "content_filter").
    hit_block: Entity | None = None
    # Characters of the response released so far (unmasked count).
    _consumed: int = 0

    def _hold_start(self, text: str) -> int:
        start = len(text)
        tails = [_DIGIT_TAIL, _PASSPORT_TAIL]
        if EMAIL in self.types:
            tails.append(_EMAIL_TAIL)
        for tail in tails:
            match = tail.search(text)
            if match is not None:
                start = min(start, match.start())
        limit = _MAX_HOLD_EMAIL if EMAIL in self.types else _MAX_HOLD
        return max(start, len(text) - limit)

    def feed(self, piece: str) -> str:
        """Add a piece of the response; return the masked text that may be sent now."""
        if self.hit_block is not None:
            return ""
        self._buffer += piece
        return self._release(final=False)

    def finish(self) -> str:
        """The end of the stream: release everything still held, masked."""
        if self.hit_block is not None:
            return ""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        watched = set(self.types) | set(self.blocked)
        if not watched:
            out, self._buffer = self._buffer, ""
            return out
        offset = len(self._context)
        text = self._context + self._buffer
        found = [e for e in find_pii(text, watched) if e.start >= offset]
        cut = len(text) if final else self._hold_start(text)
        cut = max(cut, offset)
        # An entity crossing the cut waits whole; one ending at the very end waits for its boundary.
        for entity in found:
            if entity.start < cut < entity.end or (not final and entity.end == len(text)):
                cut = min(cut, entity.start)
        released = [e for e in found if e.end <= cut]
        for entity in released:
            if entity.type in self.blocked:
                self.hit_block = entity
                sent = text[offset : entity.start]
                before = [e for e in released if e.end <= entity.start]
                self._buffer = ""
                return replace_entities(sent, [_shift(e, -offset) for e in before])
        # Entities keep offsets into the whole (unmasked) response.
        self.entities.extend(_shift(e, self._consumed - offset) for e in released)
        out_raw = text[offset:cut]
        out = replace_entities(out_raw, [_shift(e, -offset) for e in released])
        self._consumed += len(out_raw)
        self._buffer = text[cut:]
        self._context = (self._context + out_raw)[-_CONTEXT_CHARS:]
        return out


def _shift(entity: Entity, by: int) -> Entity:
    return Entity(type=entity.type, start=entity.start + by, end=entity.end + by, text=entity.text)
