"""``knowledge.lexical.LexicalIndex``: bm25s' scores, and an updated index equal to a fresh build."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stratum.knowledge.lexical import LexicalIndex
from stratum.knowledge.text import lexical_tokens
from tests.knowledge.conftest import CORPUS

HARD = CORPUS.parent / "corpus_hard"


def _corpus() -> list[list[str]]:
    """Chinese (and some English) paragraphs of both eval corpora as jieba/word tokens."""
    paragraphs = []
    for path in sorted(CORPUS.glob("*.md")) + sorted(HARD.glob("*.md")):
        paragraphs += [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return [lexical_tokens(p) for p in paragraphs]


QUERIES = [
    "逾期归还 滞纳金",
    "配件编号 QS230-K2 对应的水泵最大扬程是多少？",
    "奶奶过世了可以请几天假",
    "GW-1043 GW-1043 错误",  # a repeated token counts twice, as in bm25s
    "完全不存在的词语 zzzz",
]


def test_scores_equal_bm25s_on_chinese_text() -> None:
    import bm25s

    docs = [*_corpus(), []]  # an empty chunk keeps its row
    reference = bm25s.BM25()
    reference.index([d or ["\u2205"] for d in docs], show_progress=False)
    ours = LexicalIndex.build(docs)
    assert len(ours) == len(docs) > 100  # 145 paragraphs + the empty one
    for query in QUERIES:
        tokens = lexical_tokens(query)
        expected = np.asarray(reference.get_scores(tokens), dtype=np.float32)
        got = ours.get_scores(tokens)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ours.get_scores(lexical_tokens("GW-1043")).max() > 0
    assert not ours.get_scores(["zzzz-未见"]).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_updated_index_equals_a_fresh_build(seed: int) -> None:
    rng = random.Random(seed)
    docs = _corpus()
    rng.shuffle(docs)
    base, pool = docs[:100], docs[100:]
    index = LexicalIndex.build(base)
    current = list(base)
    positions = list(range(len(base)))  # each current row's position in ``index``
    for _ in range(3):  # several updates in a row, like revisions of a KB
        kept = [i for i in range(len(current)) if rng.random() > 0.2]  # drop ~20%
        added = [pool.pop() for _ in range(min(len(pool), rng.randint(0, 12)))] + [["全新词", "brand-new"]]
        slots = sorted(rng.sample(range(len(kept) + len(added)), len(added)))
        order: list[int] = []
        rows: list[list[str]] = []
        kept_iter, added_iter = iter(kept), iter(added)
        for slot in range(len(kept) + len(added)):
            if slot in slots:
                order.append(-1)
                rows.append(next(added_iter))
            else:
                row = next(kept_iter)
                order.append(positions[row])
                rows.append(current[row])
        index = index.updated(order, added)
        current, positions = rows, list(range(len(rows)))
        fresh = LexicalIndex.build(current)
        assert len(index) == len(fresh) == len(current)
        for query in [*QUERIES, "全新词"]:
            tokens = lexical_tokens(query)
            np.testing.assert_allclose(
                index.get_scores(tokens), fresh.get_scores(tokens), rtol=1e-6, atol=1e-7
            )


def test_update_checks_its_layout() -> None:
    index = LexicalIndex.build([["a"], ["b"]])
    with pytest.raises(ValueError, match="negative entry"):
        index.updated([0, 1, -1], [])
    assert len(index.updated([1], [])) == 1
    assert index.updated([1], []).get_scores(["b"])[0] > 0
