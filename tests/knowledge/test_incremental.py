"""Incremental index updates: a changed file replaces its chunks in the snapshot (vector index and
BM25) without a full reload, and searching afterwards gives exactly what a fresh build gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from stratum.knowledge.index import ExactIndex, HnswIndex
from stratum.knowledge.schemas import KbCreate, KbSettings, SearchRequest
from stratum.knowledge.service import KnowledgeService
from stratum.storage import Database
from tests.knowledge.conftest import CORPUS, HashEncoder

QUERIES = ("龙井茶 冲泡 水温", "图书馆 开放时间", "年假 天数", "火锅 底料", "备份 恢复 演练", "新增 条款")


def _vectors(n: int, dim: int = 16, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_update_equals_a_fresh_build() -> None:
    ids, vectors = [f"块{i}" for i in range(60)], _vectors(70)
    index = ExactIndex()
    index.build(ids, vectors[:60])
    updated = index.updated({"块3", "块10"}, ["新1", "新2"], vectors[60:62])
    fresh = ExactIndex()
    keep = [i for i in range(60) if i not in (3, 10)]
    fresh.build([ids[i] for i in keep] + ["新1", "新2"], np.concatenate([vectors[keep], vectors[60:62]]))
    for q in vectors[:10]:
        assert updated.search(q, 8) == fresh.search(q, 8)
    assert len(index) == 60 and len(updated) == 60  # the old index is untouched


def test_hnsw_tombstones_are_skipped_then_rebuilt_past_the_fraction() -> None:
    ids, vectors = [f"块{i}" for i in range(100)], _vectors(130)
    index = HnswIndex()
    index.build(ids, vectors[:100])
    gone = {f"块{i}" for i in range(10)}
    updated = index.updated(gone, ["新0"], vectors[100:101])
    assert updated.tombstones == 10 and len(updated) == 91
    for q in vectors[:10]:  # a removed vector is its own best match: it must not come back
        found = [i for i, _ in updated.search(q, 5)]
        assert not gone.intersection(found) and len(found) == 5
    assert updated.search(vectors[100], 1)[0][0] == "新0"
    assert index.tombstones == 0 and len(index) == 100  # copy-on-write: the old graph is intact
    # 10 + 15 tombstones over 76 live ones is past 20%: the graph is rebuilt without them.
    again = updated.updated({f"块{i}" for i in range(10, 25)}, [], vectors[:0])
    assert again.tombstones == 0 and len(again) == 76
    assert {i for i, _ in again.search(vectors[12], 76)} == {f"块{i}" for i in range(25, 100)} | {"新0"}


def _kb(service: KnowledgeService, project: str, name: str, tmp_path: Path, index: str):  # type: ignore[no-untyped-def]
    extra = {"milvus_uri": str(tmp_path / f"{name}.db")} if index == "milvus" else {}
    settings = KbSettings(embedding_model="hash", chunk_size=60, chunk_overlap=8, index=index, **extra)  # type: ignore[arg-type]
    return service.create(KbCreate(name=name, settings=settings), project=project)


def _results(service: KnowledgeService, kb, encoder: HashEncoder) -> list[list[tuple[str, float]]]:  # type: ignore[no-untyped-def]
    out = []
    for query in QUERIES:
        for mode in ("dense", "bm25", "hybrid"):
            hits = service.search(kb, SearchRequest(query=query, k=8, mode=mode), encoder=encoder).hits  # type: ignore[arg-type]
            out.append([(h.chunk_id, h.score) for h in hits])
    return out


@pytest.mark.parametrize("index", ["exact", "hnsw", "milvus"])
def test_a_changed_file_updates_the_index_in_place_and_matches_a_fresh_build(
    db: Database,
    service: KnowledgeService,
    project: str,
    encoder: HashEncoder,
    tmp_path: Path,
    index: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "资料"
    folder.mkdir()
    names = ("library.md", "tea.md", "hotpot.txt", "annual_leave.md", "backup.md", "bike.md", "expense.md")
    for name in (*names, "insurance.md", "onboarding.md", "panda.md", "travel.md", "yangtze.md"):
        shutil.copy(CORPUS / name, folder / name)
    kb = _kb(service, project, f"kb-{index}", tmp_path, index)
    service.ingest(kb, [folder], encoder=encoder)
    before = _results(service, kb, encoder)
    first = service.snapshot(kb)
    # A changed file (new text), a new file; the other files are skipped as unchanged.
    (folder / "tea.md").write_text(
        "# 茶\n\n龙井茶用八十度的水冲泡，新增条款：绿茶不可用沸水。\n\n## 储存\n\n茶叶密封冷藏。\n",
        encoding="utf-8",
    )
    shutil.copy(CORPUS / "security.md", folder / "security.md")
    done = service.ingest(kb, [folder], encoder=encoder)
    assert done.files_skipped == 11

    loads: list[int] = []
    original = KnowledgeService._load
    monkeypatch.setattr(KnowledgeService, "_load", lambda self, *a: loads.append(1) or original(self, *a))
    incremental = _results(service, kb, encoder)
    second = service.snapshot(kb)
    assert loads == [] and second is not first and second.revision > first.revision
    assert len(second) != len(first) and set(first.position) - set(second.position)  # tea.md's old chunks
    if index == "hnsw":
        assert isinstance(second.index, HnswIndex) and second.index.tombstones > 0
    assert incremental != before  # the change is visible

    fresh = KnowledgeService(db)
    rebuilt = _results(fresh, kb, encoder)
    assert loads == [1]
    assert incremental == rebuilt
