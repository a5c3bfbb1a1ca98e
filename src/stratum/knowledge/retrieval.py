"""Hybrid retrieval over one KB snapshot: BM25 + dense vectors, fused by reciprocal rank fusion.

A ``Snapshot`` holds a KB's chunks at one revision: ids, metadata, the vector matrix, a BM25 index
over the stored lexical tokens and a ``VectorIndex``. It is immutable; the service swaps in a
new snapshot when the KB's revision moves.

Ranking:
* dense: the index's top ``depth`` by cosine (``query: `` prefix on the query, ``passage: `` on
  chunks — the encoder adds them from ``kind``);
* bm25: Lucene BM25 over jieba/word tokens (``knowledge.lexical``: bm25s' scores, updated
  incrementally);
* hybrid: ``fuse`` (``Fusion``): by default relative-score fusion (each list min-max
  normalised, 0.7 dense + 0.3 BM25); weighted RRF (``Σ w / (rrf_k + rank)``, Cormack et al.
  2009) and dense-gated fusion are settings;
* optional MMR (λ = 0.7) re-orders the fused list for diversity, using the chunk vectors;
* filters (source globs, tags, date range) restrict both lists; with a filter the dense side is
  computed exactly over the allowed rows, so a selective filter never starves the ANN's top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

import numpy as np

from stratum.knowledge.index import VectorIndex, top_positions
from stratum.knowledge.lexical import LexicalIndex
from stratum.knowledge.schemas import SearchFilters

# How deep each list goes before fusion: enough that a chunk ranked well by one side only still
# reaches the fused top-k.
MIN_DEPTH = 50
MMR_LAMBDA = 0.7


@dataclass(frozen=True)
class ChunkMeta:
    id: str
    source: str
    page: int | None
    heading_path: list[str]
    text: str
    kind: str
    tags: tuple[str, ...]
    doc_date: datetime | None


@dataclass
class Scored:
    position: int
    score: float
    dense: float | None = None
    bm25: float | None = None


class Snapshot:
    def __init__(
        self,
        *,
        revision: int,
        chunks: list[ChunkMeta],
        vectors: np.ndarray,
        tokens: list[list[str]] | None = None,
        index: VectorIndex,
        built: bool = False,
        lexical: LexicalIndex | None = None,
    ) -> None:
        """``tokens``: every chunk's lexical tokens, for a new BM25 index; or ``lexical``: one
        already holding these chunks (``LexicalIndex.updated``, ``KnowledgeService._update``)."""
        self.revision = revision
        self.chunks = chunks
        self.vectors = vectors
        self.position = {c.id: i for i, c in enumerate(chunks)}
        self.index = index
        if chunks and not built:  # ``built``: the index already holds these chunks
            index.build([c.id for c in chunks], vectors)
        if lexical is None:
            lexical = LexicalIndex.build(tokens if tokens is not None else [[] for _ in chunks])
        if len(lexical) != len(chunks):
            raise ValueError(f"the BM25 index holds {len(lexical)} chunks, the snapshot {len(chunks)}")
        self.lexical_index = lexical

    def __len__(self) -> int:
        return len(self.chunks)

    def allowed(self, filters: SearchFilters) -> np.ndarray | None:
        if filters.empty():
            return None
        mask = np.ones(len(self.chunks), dtype=bool)
        for i, chunk in enumerate(self.chunks):
            if (
                (filters.sources and not any(fnmatchcase(chunk.source, p) for p in filters.sources))
                or (filters.tags and not set(filters.tags).intersection(chunk.tags))
                or (
                    (filters.date_from or filters.date_to)
                    and (
                        chunk.doc_date is None
                        or (filters.date_from is not None and chunk.doc_date < filters.date_from)
                        or (filters.date_to is not None and chunk.doc_date > filters.date_to)
                    )
                )
            ):
                mask[i] = False
        return mask

    def dense(self, query: np.ndarray, depth: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        if not self.chunks:
            return []
        if mask is None:
            # ``.get``: a shared Milvus collection may already hold a newer revision's ids.
            found = ((self.position.get(i), s) for i, s in self.index.search(query, depth))
            return [(p, s) for p, s in found if p is not None]
        allowed = np.flatnonzero(mask)
        scores = self.vectors[allowed] @ query
        return [(int(allowed[i]), s) for i, s in top_positions(scores, depth)]

    def lexical(self, tokens: list[str], depth: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        if not self.chunks or not tokens:
            return []
        scores = self.lexical_index.get_scores(tokens)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return [(p, s) for p, s in top_positions(scores, depth) if s > 0]

    def search(
        self,
        *,
        query_vector: np.ndarray | None,
        query_tokens: list[str],
        k: int,
        mode: str,
        fusion: Fusion,
        mmr: bool,
        filters: SearchFilters,
    ) -> list[Scored]:
        mask = self.allowed(filters)
        depth = max(MIN_DEPTH, 4 * k)
        dense = self.dense(query_vector, depth, mask) if mode != "bm25" and query_vector is not None else []
        lexical = self.lexical(query_tokens, depth, mask) if mode != "dense" else []
        if mode == "dense":
            fused = {p: Scored(p, s, dense=s) for p, s in dense}
        elif mode == "bm25":
            fused = {p: Scored(p, s, bm25=s) for p, s in lexical}
        else:
            fused = {item.position: item for item in fuse(dense, lexical, fusion)}
            if query_vector is not None:
                # The refusal threshold and the citations need the cosine of every hit, also of
                # those only BM25 found.
                for item in fused.values():
                    if item.dense is None:
                        item.dense = float(self.vectors[item.position] @ query_vector)
        ranked = sorted(fused.values(), key=lambda s: (-s.score, s.position))
        if mmr and ranked:
            return _mmr(ranked[:depth], self.vectors, k)
        return ranked[:k]


@dataclass(frozen=True)
class Fusion:
    """How hybrid mode merges the dense and the BM25 list (``KbSettings.fusion`` and its knobs).

    * ``rrf``: weighted reciprocal rank fusion, ``Σ w / (rrf_k + rank)`` (Cormack et al. 2009;
      per-list weights as in Elasticsearch/Vespa). Unweighted RRF gives a chunk that *both* lists
      hold a double score, so a mediocre dense hit that BM25 also lists outranks dense's clear
      winner on a paraphrase.
    * ``relative``: min-max normalise each list's scores to 0..1 and sum them with
      ``dense_weight`` / ``1 - dense_weight`` (Weaviate's relativeScoreFusion); a chunk missing
      from a list scores 0 there.
    * ``gated``: dense decides who is a candidate, BM25 only re-orders: the chunks within
      ``margin`` cosine of the best dense hit, plus any chunk that is BM25's top hit with a
      score at least ``lexical_ratio`` times the runner-up's (a rare code or number that one
      document alone holds), are ranked first by RRF of both lists; the rest follow by RRF.
    """

    method: str = "rrf"
    rrf_k: int = 60
    dense_weight: float = 0.5
    margin: float = 0.01
    lexical_ratio: float = 1.5


def fuse(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], fusion: Fusion) -> list[Scored]:
    """Merge the two ranked ``(position, score)`` lists (best first) into scored chunks, unsorted."""
    fused: dict[int, Scored] = {}
    for p, s in dense:
        fused[p] = Scored(p, 0.0, dense=s)
    for p, s in lexical:
        fused.setdefault(p, Scored(p, 0.0)).bm25 = s
    w_dense = 2 * fusion.dense_weight  # 0.5 is plain, unweighted RRF
    w_lexical = 2 * (1 - fusion.dense_weight)
    rrf: dict[int, float] = dict.fromkeys(fused, 0.0)
    for rank, (p, _) in enumerate(dense, start=1):
        rrf[p] += w_dense / (fusion.rrf_k + rank)
    for rank, (p, _) in enumerate(lexical, start=1):
        rrf[p] += w_lexical / (fusion.rrf_k + rank)
    if fusion.method == "rrf":
        for p, item in fused.items():
            item.score = rrf[p]
    elif fusion.method == "relative":
        for weight, ranked in ((fusion.dense_weight, dense), (1 - fusion.dense_weight, lexical)):
            if not ranked:
                continue
            top, bottom = ranked[0][1], ranked[-1][1]
            span = (top - bottom) or 1.0
            for p, s in ranked:
                fused[p].score += weight * (s - bottom) / span if top != bottom else weight
    elif fusion.method == "gated":
        gate: set[int] = set()
        if dense:
            best = dense[0][1]
            gate = {p for p, s in dense if s >= best - fusion.margin}
        if lexical and (len(lexical) == 1 or lexical[0][1] >= fusion.lexical_ratio * lexical[1][1]):
            gate.add(lexical[0][0])
        # Gate members sort above the rest; RRF (at most 4 / (rrf_k + 1) <= 2) orders each part.
        for p, item in fused.items():
            item.score = rrf[p] + (10.0 if p in gate else 0.0)
    else:
        raise ValueError(f"unknown fusion method {fusion.method!r}")
    return list(fused.values())


def _mmr(candidates: list[Scored], vectors: np.ndarray, k: int) -> list[Scored]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998) over the fused candidates."""
    relevance = np.array([c.score for c in candidates], dtype=np.float32)
    span = float(relevance.max() - relevance.min()) or 1.0
    relevance = (relevance - relevance.min()) / span
    matrix = vectors[[c.position for c in candidates]]
    chosen: list[int] = []
    remaining = list(range(len(candidates)))
    while remaining and len(chosen) < k:
        if chosen:
            similarity = (matrix[remaining] @ matrix[chosen].T).max(axis=1)
        else:
            similarity = np.zeros(len(remaining), dtype=np.float32)
        values = MMR_LAMBDA * relevance[remaining] - (1 - MMR_LAMBDA) * similarity
        best = remaining[int(np.argmax(values))]
        chosen.append(best)
        remaining.remove(best)
    return [candidates[i] for i in chosen]
