"""BM25 over pre-tokenised chunks that updates incrementally.

``bm25s`` precomputes every (token, chunk) score, and each score depends on the whole corpus (IDF,
average length), so a changed file meant re-indexing every stored chunk's tokens — most of an
incremental update's time at 20k chunks. This index keeps the raw term frequencies instead (a
sparse chunks × vocabulary matrix) and scores at query time over the query tokens' columns only:
an update copies the kept rows (C-level row selection, no re-tokenising, no re-counting) and counts
only the new chunks.

Scores equal ``bm25s.BM25()`` (its default: Lucene BM25, k1 = 1.5, b = 0.75,
``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``, a repeated query token counted each time) on the same
corpus; ``tests/knowledge/test_lexical.py`` checks that against bm25s and an updated index
against a fresh build.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

K1 = 1.5
B = 0.75
# An empty token list still occupies its row (bm25s would drop the document and shift positions).
EMPTY = "\u2205"


class LexicalIndex:
    def __init__(self, vocab: dict[str, int], tf: sparse.csr_matrix) -> None:
        self.vocab = vocab
        self.tf = tf  # chunks × len(vocab), float32 term counts
        lengths = np.asarray(tf.sum(axis=1), dtype=np.float64).ravel()
        n = tf.shape[0]
        self._columns = tf.tocsc()
        df = np.diff(self._columns.indptr).astype(np.float64)
        self._idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        average = float(lengths.mean()) if n else 1.0
        self._norm = K1 * (1.0 - B + B * lengths / (average or 1.0))

    @classmethod
    def build(cls, tokens: Sequence[Sequence[str]]) -> LexicalIndex:
        vocab: dict[str, int] = {}
        return cls(vocab, _rows(tokens, vocab))

    def __len__(self) -> int:
        return int(self.tf.shape[0])

    def updated(self, order: Sequence[int], added: Sequence[Sequence[str]]) -> LexicalIndex:
        """The index whose row ``i`` is this index's row ``order[i]`` when ``order[i] >= 0``, else
        the next chunk of ``added`` (in order) — the layout ``KnowledgeService._update`` builds."""
        from scipy import sparse

        vocab = dict(self.vocab)
        new = _rows(added, vocab)
        old = self.tf
        old = sparse.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], len(vocab)))
        stacked = sparse.vstack([old, new], format="csr")
        rows = np.asarray(order, dtype=np.int64).copy()
        fresh = rows < 0
        if int(fresh.sum()) != len(added):
            raise ValueError("order must hold one negative entry per added chunk")
        rows[fresh] = old.shape[0] + np.arange(len(added))
        return LexicalIndex(vocab, stacked[rows])

    def get_scores(self, tokens: Sequence[str]) -> np.ndarray:
        scores = np.zeros(len(self), dtype=np.float32)
        columns = self._columns
        for token in tokens:
            column = self.vocab.get(token)
            if column is None:
                continue
            start, end = columns.indptr[column], columns.indptr[column + 1]
            docs = columns.indices[start:end]
            tf = columns.data[start:end].astype(np.float64)
            scores[docs] += (self._idf[column] * tf / (self._norm[docs] + tf)).astype(np.float32)
        return scores


def _rows(tokens: Sequence[Sequence[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    """Term counts of ``tokens`` (one row each), growing ``vocab`` with unseen tokens."""
    from scipy import sparse  # comes with the knowledge extra (bm25s needs it too)

    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for document in tokens:
        counts = Counter(document or [EMPTY])
        for token, count in counts.items():
            column = vocab.get(token)
            if column is None:
                column = vocab[token] = len(vocab)
            indices.append(column)
            data.append(count)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(tokens), len(vocab)),
    )
