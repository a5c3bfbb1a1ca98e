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
# Tails are matched on the reversed text (anchored at its start: linear, however long the run).
_DIGIT_RUN_REVERSED = re.compile(r"[\d \-.Xx()+]+")
_DIGIT_STARTS = frozenset("0123456789+(")
_PASSPORT_TAIL_REVERSED = re.compile(r"\d{0,8}[A-Z]{1,2}(?![0-9A-Za-z])")
_EMAIL_TAIL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-@]+")
_DIGIT_OR_AT = re.compile(r"[\d@]")


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
    _watched: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._watched = frozenset(self.types) | frozenset(self.blocked)

    def _hold_start(self, text: str) -> int:
        """Where the tail that could still become an entity starts (``len(text)``: none)."""
        limit = _MAX_HOLD_EMAIL if EMAIL in self.types else _MAX_HOLD
        size = len(text)
        window = text[: size - limit - 1 : -1] if size > limit else text[::-1]
        start = size
        run = _DIGIT_RUN_REVERSED.match(window)
        if run is not None:
            # The run's first character that can open an entity (a digit, "+86", "(+86)").
            tail = text[size - run.end() :]
            for index, char in enumerate(tail):
                if char in _DIGIT_STARTS:
                    start = size - len(tail) + index
                    break
        passport = _PASSPORT_TAIL_REVERSED.match(window)
        if passport is not None:
            start = min(start, size - passport.end())
        if EMAIL in self.types and (email := _EMAIL_TAIL_REVERSED.match(window)) is not None:
            start = min(start, size - email.end())
        return start

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
        watched = self._watched
        if not watched:
            out, self._buffer = self._buffer, ""
            return out
        offset = len(self._context)
        text = self._context + self._buffer
        # Every entity holds a digit or "@", and only entities starting in the buffer count.
        maybe = _DIGIT_OR_AT.search(self._buffer) is not None
        found = [e for e in find_pii(text, watched) if e.start >= offset] if maybe else []
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
        out_raw = text[offset:cut]
        out = out_raw
        if released:
            # Entities keep offsets into the whole (unmasked) response.
            self.entities.extend(_shift(e, self._consumed - offset) for e in released)
            out = replace_entities(out_raw, [_shift(e, -offset) for e in released])
        self._consumed += len(out_raw)
        self._buffer = text[cut:]
        self._context = (self._context + out_raw)[-_CONTEXT_CHARS:]
        return out


def _shift(entity: Entity, by: int) -> Entity:
    return Entity(type=entity.type, start=entity.start + by, end=entity.end + by, text=entity.text)
