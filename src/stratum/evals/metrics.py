"""Per-item scores of a generated answer against one or more references, Chinese-aware.

Every metric maps ``(prediction, references)`` to a float in [0, 1] (the best over references), so
per-item scores can be averaged, compared pairwise and bootstrapped the same way.

Tokens: a CJK character is a token on its own (Chinese has no spaces; character-level scoring is the
convention of CMRC/DuReader-style F1 and of character BLEU/chrF), Latin text splits into words.
BLEU and chrF come from ``sacrebleu`` (its ``zh`` tokenizer splits CJK characters the same way).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

# CJK ideographs, kana and hangul: one token per character.
_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+", re.UNICODE
)
_PUNCTUATION = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】…—～·「」『』")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, no punctuation, no English articles, one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(any(normalize(prediction) == normalize(ref) for ref in references))


def f1(prediction: str, references: Sequence[str]) -> float:
    return max((_f1(tokens(prediction), tokens(ref)) for ref in references), default=0.0)


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure (β = 1) on the same tokens as F1."""
    return max((_rouge_l(tokens(prediction), tokens(ref)) for ref in references), default=0.0)


def _rouge_l(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def bleu(prediction: str, references: Sequence[str]) -> float:
    """Sentence BLEU (exponential smoothing) with CJK characters as tokens, scaled to [0, 1]."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, list(references), tokenize="zh").score) / 100.0


def chrf(prediction: str, references: Sequence[str]) -> float:
    """chrF (character 6-grams, β = 2), scaled to [0, 1]: meaningful for Chinese as is."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, list(references)).score) / 100.0


def contains(prediction: str, references: Sequence[str]) -> float:
    """1 when any reference string occurs in the normalised prediction (answer-string recall)."""
    pred = normalize(prediction)
    return float(any(normalize(ref) and normalize(ref) in pred for ref in references))


Metric = Callable[[str, Sequence[str]], float]

METRICS: dict[str, Metric] = {
    "exact_match": exact_match,
    "f1": f1,
    "rouge_l": rouge_l,
    "bleu": bleu,
    "chrf": chrf,
    "contains": contains,
}
