"""PII detection and masking: mainland-China resident IDs, mobile numbers, bank cards, emails,
IPv4 addresses and passport numbers, in Chinese and English text.

Public API (the datasets PII scrub calls it too; keep the signatures)::

    find_pii(text, types=None) -> list[Entity]         non-overlapping, ordered by start
    mask_pii(text, types=None) -> (masked, entities)   each entity replaced by ``[TYPE]``

Mask style: the whole entity becomes its upper-case type in brackets (``[ID_CARD]``, ``[PHONE]``,
``[BANK_CARD]``, ``[EMAIL]``, ``[IPV4]``, ``[PASSPORT]``). Partial masks (``110***********1234``)
keep digits that, with a birth date or a bank prefix, narrow a person down; a label keeps none and
still tells the model (and a reader) what was there.

Boundaries: ``\\b`` is useless next to Chinese (``号`` is a word character to ``re``, so
``身份证号110101…`` has no ``\\b`` before the digits). Every pattern instead says which ASCII
characters may not touch it (digits, Latin letters), so CJK text and punctuation are boundaries.

Precision over shape: an ID-shaped number must carry a valid province code, a real birth date not in
the future and the right GB 11643 check digit; an ID-shaped number with a wrong check digit is
nothing (not a bank card either), because order numbers often look like IDs. Bank cards need the
Luhn check and a card-network first digit; mobile numbers a 1[3-9] prefix and no decimal part
(``13912345678.50`` is a price).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import date

from stratum.errors import InvalidRequest

ID_CARD = "id_card"
PHONE = "phone"
BANK_CARD = "bank_card"
EMAIL = "email"
IPV4 = "ipv4"
PASSPORT = "passport"
# Also the priority when two candidates overlap (the earlier type wins at equal length).
PII_TYPES: tuple[str, ...] = (EMAIL, ID_CARD, BANK_CARD, PASSPORT, PHONE, IPV4)


@dataclass(frozen=True)
class Entity:
    type: str
    start: int
    end: int
    text: str


def mask_label(kind: str) -> str:
    return f"[{kind.upper()}]"


# ASCII characters that may not touch a number on either side (CJK and punctuation may).
_NOT_AFTER_ALNUM = r"(?<![0-9A-Za-z])"
_NOT_BEFORE_ALNUM = r"(?![0-9A-Za-z])"

# GB 11643-1999: 17 digits weighted, sum mod 11 picks the check character.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Province-level codes (the first two digits) of GB/T 2260, plus 71 Taiwan, 81/82 HK/Macau, 83 for
# the residence permits of Taiwan residents.
_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42"}
    | {"43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"}
    | {"83"}
)
_ID_RE = re.compile(_NOT_AFTER_ALNUM + r"[1-9]\d{16}[0-9Xx]" + _NOT_BEFORE_ALNUM)

# Optional +86 / 0086 / (+86), then 3-4-4 digits with optional single space or hyphen separators.
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ \-]?|\(\+?86\)[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}){2}"
    + _NOT_BEFORE_ALNUM
    + r"(?![.,]\d)"
)
# A decimal part before it (``1.13912345678``) or a currency sign makes it a number, not a phone.
_NOT_PHONE_BEFORE = re.compile(r"(?:\d[.,]|[¥￥$€£])\s?$")

# 16-19 digits, optionally in groups of four separated by one space or hyphen.
_CARD_RE = re.compile(
    _NOT_AFTER_ALNUM
    + r"(?:\d{4}[ \-]){3}\d{4}(?:[ \-]?\d{1,3})?"
    + _NOT_BEFORE_ALNUM
    + "|"
    + _NOT_AFTER_ALNUM
    + r"\d{16,19}"
    + _NOT_BEFORE_ALNUM
)
# First digits of card networks: 3 (JCB/Amex), 4 (Visa), 5 (Mastercard), 6 (UnionPay/Discover),
# 9 (domestic debit cards such as ICBC 9558). Order numbers starting with a year (2024…) are out.
_CARD_FIRST = frozenset("34569")

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(r"(?<![0-9A-Za-z.])" + rf"{_OCTET}(?:\.{_OCTET}){{3}}" + r"(?![0-9A-Za-z]|\.\d)")

# Chinese passports: E + 8 digits, E + letter (not I/O) + 7 digits (e-passports since 2017), G + 8
# digits (before 2012), DE/SE/PE + 7 digits (diplomatic, service, public affairs).
_PASSPORT_RE = re.compile(
    _NOT_AFTER_ALNUM + r"(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E\d{7})" + _NOT_BEFORE_ALNUM
)
# Any country's passport when the text says so: "护照号码：AB1234567", "passport no. 533380006".
_PASSPORT_CONTEXT_RE = re.compile(
    r"(?:护照|passport)\s*(?:号码|号|no\.?|number|#)?\s*(?:是|为|[:：])?\s*"
    r"(?P<number>(?<![0-9A-Za-z])[A-Z]{0,2}\d{6,9}(?![0-9A-Za-z]))",
    re.IGNORECASE,
)


_ANY_DIGIT_OR_AT = re.compile(r"[\d@]")


def _birth_date_ok(digits: str) -> bool:
    """Positions 7-14 of an ID: a real date between 1900 and today."""
    try:
        born = date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def id_shaped(number: str) -> bool:
    """18 characters with a province code and a plausible birth date (check digit not looked at)."""
    return len(number) == 18 and number[:2] in _PROVINCES and _birth_date_ok(number)


def id_checksum_ok(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _id_cards(text: str) -> Iterator[tuple[int, int]]:
    for match in _ID_RE.finditer(text):
        number = match.group()
        if id_shaped(number) and id_checksum_ok(number):
            yield match.span()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for match in _PHONE_RE.finditer(text):
        if not _NOT_PHONE_BEFORE.search(text, max(0, match.start() - 3), match.start()):
            yield match.span()


def _bank_cards(text: str) -> Iterator[tuple[int, int]]:
    for match in _CARD_RE.finditer(text):
        digits = re.sub(r"[ \-]", "", match.group())
        if not 16 <= len(digits) <= 19 or digits[0] not in _CARD_FIRST:
            continue
        # An ID-shaped number is an ID or nothing: order numbers look like IDs more than like cards.
        if id_shaped(digits):
            continue
        if luhn_ok(digits):
            yield match.span()


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for match in _EMAIL_RE.finditer(text):
        yield match.span()


def _ipv4s(text: str) -> Iterator[tuple[int, int]]:
    for match in _IPV4_RE.finditer(text):
        yield match.span()


def _passports(text: str) -> Iterator[tuple[int, int]]:
    for match in _PASSPORT_RE.finditer(text):
        yield match.span()
    for match in _PASSPORT_CONTEXT_RE.finditer(text):
        yield match.span("number")


_DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    ID_CARD: _id_cards,
    PHONE: _phones,
    BANK_CARD: _bank_cards,
    EMAIL: _emails,
    IPV4: _ipv4s,
    PASSPORT: _passports,
}


def check_types(types: Collection[str] | None) -> tuple[str, ...]:
    """The requested types in priority order; InvalidRequest naming an unknown one."""
    if types is None:
        return PII_TYPES
    unknown = sorted(set(types) - set(PII_TYPES))
    if unknown:
        raise InvalidRequest(
            f"unknown PII type {unknown[0]!r}; choose from {', '.join(PII_TYPES)}", param="types"
        )
    return tuple(t for t in PII_TYPES if t in types)


def find_pii(text: str, types: Collection[str] | None = None) -> list[Entity]:
    """The PII entities of ``text`` (all types, or ``types``), non-overlapping, ordered by start.

    Overlapping candidates resolve to the longer one, then to the type listed first in
    ``PII_TYPES`` (an email ``13812345678@163.com`` is an email, not a phone).
    """
    wanted = check_types(types)
    # Every entity holds a digit or an "@": prose without either is done in one cheap pass.
    if not _ANY_DIGIT_OR_AT.search(text):
        return []
    candidates: list[tuple[int, int, int, str]] = []
    for rank, kind in enumerate(wanted):
        for start, end in _DETECTORS[kind](text):
            candidates.append((start, end, rank, kind))
    # Longest first, then priority; keep each candidate that overlaps nothing kept so far.
    candidates.sort(key=lambda c: (-(c[1] - c[0]), c[2], c[0]))
    # Kept spans never overlap, so sorted by start they are also sorted by end: one bisect finds
    # the only neighbours a candidate could overlap.
    starts: list[int] = []
    kept: list[tuple[int, int, str]] = []
    for start, end, _, kind in candidates:
        at = bisect.bisect_right(starts, start)
        if at > 0 and kept[at - 1][1] > start:
            continue
        if at < len(kept) and kept[at][0] < end:
            continue
        starts.insert(at, start)
        kept.insert(at, (start, end, kind))
    return [Entity(type=kind, start=start, end=end, text=text[start:end]) for start, end, kind in kept]


def replace_entities(text: str, entities: list[Entity]) -> str:
    """``text`` with each entity (ordered, non-overlapping) replaced by its label."""
    parts, cursor = [], 0
    for entity in entities:
        parts.append(text[cursor : entity.start])
        parts.append(mask_label(entity.type))
        cursor = entity.end
    parts.append(text[cursor:])
    return "".join(parts)


def mask_pii(text: str, types: Collection[str] | None = None) -> tuple[str, list[Entity]]:
    """``text`` with every entity of ``types`` replaced by ``[TYPE]``, and the entities found
    (offsets into the original ``text``)."""
    entities = find_pii(text, types)
    return replace_entities(text, entities), entities
