"""Text measures shared by chunking and BM25: token counts, lexical tokens, sentence splits.

Chunk sizes are counted in *tokens* with a cheap, model-free estimate: one token per CJK
character and one per Latin word or number. That is close to what e5's SentencePiece vocabulary
produces for Chinese (about one piece per character) and somewhat below it for English (pieces
split rare words), so a 256-token chunk always fits e5's 512-token window with its prefix.

Lexical tokens feed BM25: jieba's search-mode segmentation for Chinese (it adds the sub-words of
long words, so 知识库 also matches 知识), lower-cased words for Latin text, with punctuation and a
short stop list dropped.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_HAS_CJK = re.compile(rf"[{_CJK}]")
_WORD = re.compile(r"\w", re.UNICODE)
# Sentence ends: Chinese full stops and the semicolon (the issue's 。！？；) plus Latin ones
# followed by a space. Kept with the sentence they end.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.!?])(?=\s)")
# Single-character Chinese function words and short English ones carry no topic for BM25.
_STOP = frozenset("的了是在和与及或也就都而之其这那有为对从把被").union(
    "a an the of to in on for and or is are be by as at it this that with from".split()  # noqa: SIM905
)

_jieba_lock = threading.Lock()
_jieba: Any = None


def count_tokens(text: str) -> int:
    """The chunk-size measure: CJK characters plus Latin words/numbers."""
    return len(_TOKEN.findall(text))


def split_sentences(text: str) -> list[str]:
    """Split at sentence ends (。！？； and . ! ? ; before a space), keeping the punctuation."""
    parts = [p for p in _SENTENCE_END.split(text) if p and p.strip()]
    return parts or ([text] if text.strip() else [])


def _segmenter() -> Any:
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import logging
            import warnings

            with warnings.catch_warnings():
                # jieba's sources have invalid escape sequences, a SyntaxWarning when compiled.
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                import jieba

            # jieba logs its dictionary load at DEBUG/INFO through its own handler on stderr.
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _jieba = tokenizer
        return _jieba


def lexical_tokens(text: str) -> list[str]:
    """BM25 tokens: jieba (search mode) where there is Chinese, lower-cased words elsewhere."""
    lowered = text.lower()
    if _HAS_CJK.search(lowered):
        pieces = _segmenter().cut_for_search(lowered)
    else:
        pieces = re.findall(r"[a-z0-9]+", lowered)
    out = []
    for piece in pieces:
        piece = piece.strip()
        if not piece or not _WORD.search(piece) or piece in _STOP:
            continue
        out.append(piece)
    return out


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) rather than inside the first query."""
    _segmenter()
