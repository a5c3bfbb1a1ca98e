"""``length`` and ``sensitive``: drop rows by size, drop (or mask) rows containing listed words.

Length counts characters of the whole row (every text field), which treats one Chinese character
like one Latin letter; ``field`` restricts it to one field (e.g. ``output``; for chat, the last
assistant message). Sensitive words are matched case-insensitively after NFKC, with one
Aho-Corasick automaton (pyahocorasick) when installed, else a plain scan.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from stratum.data.formats import FIELDS, map_texts, row_text
from stratum.data.schemas import StepReport
from stratum.data.transforms.base import ReportBuilder, Rows, Step
from stratum.errors import InvalidRequest


def _field_text(row: dict[str, Any], fmt: str, field: str | None) -> str:
    if field is None:
        return row_text(row, fmt)
    if fmt == "chat":
        if field not in ("user", "assistant"):
            raise InvalidRequest("for chat rows, length field is user or assistant", param="params")
        texts = [m["content"] for m in row["messages"] if m["role"] == field]
        return texts[-1] if texts else ""
    if field not in FIELDS[fmt]:
        raise InvalidRequest(f"{fmt} rows have no field {field!r}", param="params")
    return str(row[field])


def _length(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    low, high = params["min_chars"], params["max_chars"]
    if low is None and high is None:
        raise InvalidRequest("length needs min_chars and/or max_chars", param="params")
    report = ReportBuilder("length", fmt, len(rows))
    out: Rows = []
    for index, row in enumerate(rows):
        size = len(_field_text(row, fmt, params["field"]))
        if low is not None and size < int(low):
            report.drop(index, row, "too_short", f"{size} < {low} characters")
        elif high is not None and size > int(high):
            report.drop(index, row, "too_long", f"{size} > {high} characters")
        else:
            out.append(row)
    report.details = {"min_chars": low, "max_chars": high, "field": params["field"]}
    return out, report.build(len(out))


class WordMatcher:
    """Finds listed words in text (case-insensitive, NFKC)."""

    def __init__(self, words: list[str]) -> None:
        self.words = sorted({self._fold(w) for w in words if w.strip()})
        if not self.words:
            raise InvalidRequest("the sensitive step needs words or words_file", param="params")
        try:
            import ahocorasick
        except ImportError:
            self._automaton = None
        else:
            self._automaton = ahocorasick.Automaton()
            for word in self.words:
                self._automaton.add_word(word, word)
            self._automaton.make_automaton()

    @staticmethod
    def _fold(text: str) -> str:
        # NFKC + casefold keeps string length for the texts we mask (CJK, Latin) in practice; the
        # mask below works on the folded text's positions only when lengths agree.
        return unicodedata.normalize("NFKC", text).casefold()

    def find(self, text: str) -> list[tuple[int, int, str]]:
        folded = self._fold(text)
        if self._automaton is not None:
            return [(end - len(word) + 1, end + 1, word) for end, word in self._automaton.iter(folded)]
        hits = []
        for word in self.words:
            start = folded.find(word)
            while start != -1:
                hits.append((start, start + len(word), word))
                start = folded.find(word, start + 1)
        return hits

    def mask(self, text: str, char: str = "*") -> str:
        if len(self._fold(text)) != len(text):
            text = self._fold(text)
        chars = list(text)
        for start, end, _ in self.find(text):
            chars[start:end] = char * (end - start)
        return "".join(chars)


def _words(params: dict[str, Any]) -> list[str]:
    words = list(params["words"] or [])
    if params["words_file"]:
        path = Path(params["words_file"])
        if not path.is_file():
            raise InvalidRequest(f"no such words file: {path}", param="params")
        words.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [w for w in words if w and not w.startswith("#")]


def _sensitive(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    if params["action"] not in ("drop", "mask"):
        raise InvalidRequest("sensitive action is drop or mask", param="params")
    matcher = WordMatcher(_words(params))
    report = ReportBuilder("sensitive", fmt, len(rows))
    out: Rows = []
    counts: dict[str, int] = {}
    for index, row in enumerate(rows):
        hits = matcher.find(row_text(row, fmt))
        if not hits:
            out.append(row)
            continue
        for _, _, word in hits:
            counts[word] = counts.get(word, 0) + 1
        if params["action"] == "drop":
            report.drop(index, row, "sensitive_word", f"{len(hits)} match(es)")
        else:
            out.append(map_texts(row, fmt, matcher.mask))
            report.changed += 1
    # Counts per word, never the matched text of a row beyond the examples.
    report.details = {"action": params["action"], "words": len(matcher.words), "matches": counts}
    return out, report.build(len(out))


LENGTH = Step(
    name="length",
    version=1,
    apply=_length,
    params={"min_chars": None, "max_chars": None, "field": None},
    help="drop rows shorter than min_chars or longer than max_chars (whole row, or one field)",
)
SENSITIVE = Step(
    name="sensitive",
    version=1,
    apply=_sensitive,
    params={"words": [], "words_file": None, "action": "drop"},
    help="drop (action=drop) or mask (action=mask) rows containing listed words "
    "(words=[..] or words_file=PATH)",
)
