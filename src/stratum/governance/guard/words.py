"""Sensitive-word lists matched with an Aho-Corasick automaton (pyahocorasick).

Chinese-aware: a CJK word matches anywhere (Chinese has no spaces between words, so ``赌博`` must
be found inside ``网上赌博平台``); a word made of Latin letters or digits matches only as a whole
word (``ass`` must not fire inside ``class``). Matching is case-insensitive and sees full-width
letters as their ASCII forms (NFKC), so ``ＶＰＮ`` matches ``vpn``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The longest word a list may hold, and the most words (keeps the automaton small per project).
MAX_WORD_CHARS = 64
MAX_WORDS = 10_000


@dataclass(frozen=True)
class WordHit:
    word: str
    start: int
    end: int


def normalise(text: str) -> str:
    """Case-folded NFKC, one character for one character (so offsets stay valid).

    NFKC can change lengths (``ﬁ`` → ``fi``); characters whose normal form is not one character keep
    their lower-case form, which keeps every offset pointing into the original text.
    """
    if text.isascii():
        return text.lower()
    return "".join(map(_fold, text))


@functools.lru_cache(maxsize=8192)
def _fold(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char).lower()
    lower = char.lower()
    return folded if len(folded) == 1 else lower if len(lower) == 1 else char


def _is_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


class WordList:
    """An automaton over a list of words; ``find`` returns non-overlapping hits, longest first."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({normalise(w.strip()) for w in words if w.strip()})
        self._automaton: Any = None
        if self.words:
            self._automaton = _build(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def find(self, text: str) -> list[WordHit]:
        if self._automaton is None or not text:
            return []
        haystack = normalise(text)
        candidates = []
        for end_index, word in self._automaton.iter(haystack):
            start, end = end_index - len(word) + 1, end_index + 1
            if _is_word_char(word[0]) and start > 0 and _is_word_char(haystack[start - 1]):
                continue
            if _is_word_char(word[-1]) and end < len(haystack) and _is_word_char(haystack[end]):
                continue
            candidates.append((start, end))
        candidates.sort(key=lambda c: (c[0], -(c[1] - c[0])))
        hits: list[WordHit] = []
        for start, end in candidates:
            if hits and start < hits[-1].end:
                continue
            hits.append(WordHit(word=text[start:end], start=start, end=end))
        return hits

    def mask(self, text: str, hits: list[WordHit] | None = None) -> str:
        """Each hit replaced by as many ``*`` as it has characters."""
        hits = self.find(text) if hits is None else hits
        parts, cursor = [], 0
        for hit in hits:
            parts.append(text[cursor : hit.start])
            parts.append("*" * (hit.end - hit.start))
            cursor = hit.end
        parts.append(text[cursor:])
        return "".join(parts)


def _build(words: list[str]) -> Any:
    try:
        import ahocorasick
    except ImportError:
        return _PythonAutomaton(words)
    automaton = ahocorasick.Automaton()
    for word in words:
        automaton.add_word(word, word)
    automaton.make_automaton()
    return automaton


class _PythonAutomaton:
    """The same matches without the compiled extension (a plain Aho-Corasick in Python)."""

    def __init__(self, words: list[str]) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._fail = [0]
        self._out: list[list[str]] = [[]]
        for word in words:
            node = 0
            for char in word:
                nxt = self._goto[node].get(char)
                if nxt is None:
                    self._goto.append({})
                    self._fail.append(0)
                    self._out.append([])
                    nxt = len(self._goto) - 1
                    self._goto[node][char] = nxt
                node = nxt
            self._out[node].append(word)
        queue = list(self._goto[0].values())
        while queue:
            node = queue.pop(0)
            for char, child in self._goto[node].items():
                queue.append(child)
                if node == 0:  # depth-1 nodes fail to the root
                    continue
                fail = self._fail[node]
                while fail and char not in self._goto[fail]:
                    fail = self._fail[fail]
                self._fail[child] = self._goto[fail].get(char, 0)
                self._out[child] = self._out[child] + self._out[self._fail[child]]

    def iter(self, text: str) -> Iterable[tuple[int, str]]:
        node = 0
        for index, char in enumerate(text):
            while node and char not in self._goto[node]:
                node = self._fail[node]
            node = self._goto[node].get(char, 0)
            for word in self._out[node]:
                yield index, word
