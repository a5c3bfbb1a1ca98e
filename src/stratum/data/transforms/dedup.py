"""``dedup``: exact duplicates, then near duplicates by MinHash LSH (datasketch).

Exact: rows whose text is equal after NFKC, lowercasing and removing all whitespace. Near: the
Jaccard similarity of shingle sets estimated by MinHash, candidates found by LSH at ``threshold``.
Shingles are character n-grams (whitespace removed) for text that is mostly Chinese/Japanese/Korean,
where words are not space-separated, and word n-grams otherwise. The first occurrence is kept.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from stratum.data.formats import row_text
from stratum.data.schemas import StepReport
from stratum.data.transforms.base import ReportBuilder, Rows, Step
from stratum.errors import InvalidRequest

INSTALL_HINT = "pip install 'stratum[data]'"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"\w+")
# Text is treated as CJK when at least this share of its non-space characters are CJK.
CJK_SHARE = 0.3


def exact_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).lower())


def is_cjk(text: str) -> bool:
    visible = [c for c in text if not c.isspace()]
    return bool(visible) and sum(1 for c in visible if _CJK.match(c)) / len(visible) >= CJK_SHARE


def shingles(text: str, *, char_n: int = 3, word_n: int = 3) -> set[str]:
    """Character n-grams for CJK text, word n-grams otherwise (the whole text if it is shorter)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if is_cjk(text):
        chars = re.sub(r"\s+", "", text)
        if len(chars) <= char_n:
            return {chars} if chars else set()
        return {chars[i : i + char_n] for i in range(len(chars) - char_n + 1)}
    words = _WORD.findall(text)
    if len(words) <= word_n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + word_n]) for i in range(len(words) - word_n + 1)}


def _apply(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    threshold = float(params["threshold"])
    if not 0 < threshold <= 1:
        raise InvalidRequest("dedup threshold must be in (0, 1]", param="params")
    report = ReportBuilder("dedup", fmt, len(rows))
    texts = [row_text(row, fmt) for row in rows]
    seen: dict[str, int] = {}
    survivors: list[int] = []
    for index, text in enumerate(texts):
        key = exact_key(text)
        if key in seen:
            report.drop(index, rows[index], "exact_duplicate", f"of row {seen[key]}")
            continue
        seen[key] = index
        survivors.append(index)
    kept = survivors
    if params["near"] and len(survivors) > 1:
        kept = _near(rows, texts, survivors, fmt, params, report)
    report.details = {"threshold": threshold, "num_perm": params["num_perm"]}
    out = [rows[i] for i in kept]
    return out, report.build(len(out))


def _near(
    rows: Rows,
    texts: list[str],
    candidates: list[int],
    fmt: str,
    params: dict[str, Any],
    report: ReportBuilder,
) -> list[int]:
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:
        raise InvalidRequest(f"near-duplicate removal needs datasketch: {INSTALL_HINT}") from exc
    num_perm = int(params["num_perm"])
    lsh = MinHashLSH(threshold=float(params["threshold"]), num_perm=num_perm)
    kept: list[int] = []
    for index in candidates:
        grams = shingles(texts[index], char_n=int(params["char_ngram"]), word_n=int(params["word_ngram"]))
        signature = MinHash(num_perm=num_perm, seed=int(params["seed"]))
        # One vectorised update per row (numpy over all shingles), not one per shingle.
        signature.update_batch([gram.encode("utf-8") for gram in grams])
        matches = lsh.query(signature)
        if matches:
            report.drop(index, rows[index], "near_duplicate", f"of row {min(int(m) for m in matches)}")
            continue
        lsh.insert(str(index), signature)
        kept.append(index)
    return kept


STEP = Step(
    name="dedup",
    version=1,
    apply=_apply,
    params={"near": True, "threshold": 0.8, "num_perm": 128, "char_ngram": 3, "word_ngram": 3, "seed": 1},
    help="exact duplicates (NFKC, case and whitespace ignored), then near duplicates by MinHash LSH "
    "(threshold=0.8; character 3-grams for Chinese, word 3-grams otherwise)",
)
