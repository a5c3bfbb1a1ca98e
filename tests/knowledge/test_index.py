"""Vector indexes behind one Protocol: exact (the fake), faiss HNSW, Milvus through milvus-lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratum.errors import InvalidRequest
from stratum.knowledge.index import ExactIndex, HnswIndex, MilvusIndex, VectorIndex, make_index
from stratum.knowledge.schemas import KbCreate, KbSettings, SearchRequest
from stratum.knowledge.service import KnowledgeService
from tests.knowledge.conftest import CORPUS, HashEncoder


def _data(n: int = 2000, dim: int = 32) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, dim)) + 1.0
    vectors = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = vectors[:20] + 0.05 * rng.standard_normal((20, dim)).astype(np.float32)
    return [f"块{i}" for i in range(n)], vectors, queries


def test_exact_index_is_exact_and_handles_small_and_empty() -> None:
    ids, vectors, queries = _data(50)
    index = ExactIndex()
    assert index.search(queries[0], 5) == []
    index.build(ids, vectors)
    assert isinstance(index, VectorIndex) and len(index) == 50
    found = index.search(vectors[3], 100)
    assert len(found) == 50 and found[0][0] == "块3" and found[0][1] == pytest.approx(1.0, abs=1e-5)
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)


def test_hnsw_matches_exact_on_clustered_data() -> None:
    ids, vectors, queries = _data()
    exact, hnsw = ExactIndex(), HnswIndex()
    exact.build(ids, vectors)
    hnsw.build(ids, vectors)
    recall = np.mean(
        [len({i for i, _ in hnsw.search(q, 10)} & {i for i, _ in exact.search(q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95
    assert make_index("auto", 10).name == "exact" and make_index("auto", 50_000).name == "hnsw"
    with pytest.raises(InvalidRequest, match="milvus_uri"):
        make_index("milvus", 10)


@pytest.mark.slow
def test_milvus_lite_gives_the_exact_neighbours(tmp_path: Path) -> None:
    ids, vectors, queries = _data(300)
    exact = ExactIndex()
    exact.build(ids, vectors)
    milvus = MilvusIndex(str(tmp_path / "milvus.db"), "kb_test")
    try:
        milvus.build(ids, vectors)
        assert len(milvus) == 300
        for q in queries[:5]:
            assert [i for i, _ in milvus.search(q, 5)][:3] == [i for i, _ in exact.search(q, 5)][:3]
        milvus.build(ids[:10], vectors[:10])  # a rebuild replaces the collection
        assert {i for i, _ in milvus.search(queries[0], 50)} <= set(ids[:10])
    finally:
        milvus.drop()
        milvus.close()


@pytest.mark.slow
def test_a_kb_on_milvus_searches_like_one_on_the_embedded_index(
    service: KnowledgeService, project: str, encoder: HashEncoder, tmp_path: Path
) -> None:
    base = {"embedding_model": "hash", "chunk_size": 120}
    embedded = service.create(
        KbCreate(name="embedded", settings=KbSettings(**base, index="exact")), project=project
    )
    uri = str(tmp_path / "kb-milvus.db")
    scaled = service.create(
        KbCreate(name="milvus", settings=KbSettings(**base, index="milvus", milvus_uri=uri)), project=project
    )
    for kb in (embedded, scaled):
        service.ingest(kb, [CORPUS / "library.md", CORPUS / "tea.md"], encoder=encoder)
    query = SearchRequest(query="龙井茶 冲泡 水温", k=3, mode="dense")
    a = [h.text for h in service.search(embedded, query, encoder=encoder).hits]
    b = [h.text for h in service.search(scaled, query, encoder=encoder).hits]
    assert a == b and a
