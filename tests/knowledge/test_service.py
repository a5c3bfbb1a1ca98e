"""KnowledgeService: ingest (incremental, changed files), hybrid search, filters, export/import."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stratum.errors import Conflict, InvalidRequest, NotFound, PolicyDenied
from stratum.knowledge.archive import export_kb, import_kb
from stratum.knowledge.schemas import KbCreate, KbPublic, SearchFilters, SearchRequest
from stratum.knowledge.service import KnowledgeService, check_access
from stratum.storage import Database
from tests.knowledge.conftest import CORPUS, HashEncoder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    target.mkdir()
    for name in ("library.md", "bike.md", "x1_manual.pdf", "shuttle.csv", "hotpot.txt"):
        shutil.copy(CORPUS / name, target / name)
    return target


def test_ingest_then_search_returns_cited_chunks(
    service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder
) -> None:
    seen = []
    result = service.ingest(kb, [folder], encoder=encoder, progress=lambda p: seen.append(p.chunks_done))
    assert result.state == "done" and result.files_total == 5 and result.files_failed == 0
    assert result.chunks_done > 5 and result.pages_done >= 3 + 4
    assert seen[-1] == result.chunks_done and seen == sorted(seen)
    found = service.search(kb, SearchRequest(query="X1 音箱的电池容量是多少？", k=3), encoder=encoder)
    top = found.hits[0]
    assert top.source == "x1_manual.pdf" and top.page == 2 and "五千毫安时" in top.text
    assert top.heading_path == ["3 电池与充电"] and len(top.chunk_id) == 32
    bm25 = service.search(kb, SearchRequest(query="滞纳金", k=3, mode="bm25"), encoder=None)
    assert bm25.hits[0].source == "library.md" and bm25.hits[0].heading_path[-1] == "借阅规则"
    table = service.search(kb, SearchRequest(query="夜班线 班车", k=1), encoder=encoder)
    assert table.hits[0].source == "shuttle.csv" and "21:30" in table.hits[0].text


def test_unchanged_files_are_skipped_and_changed_ones_replaced(
    service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder
) -> None:
    first = service.ingest(kb, [folder], encoder=encoder)
    bike_before = _chunks_of(service, kb, "bike.md")
    embedded = encoder.texts
    again = service.ingest(kb, [folder], encoder=encoder)
    assert again.files_skipped == 5 and encoder.texts == embedded and again.chunks_done == 0
    (folder / "bike.md").write_text(
        "# 公共自行车\n\n骑行费用改为每小时两元，全天封顶二十元。", encoding="utf-8"
    )
    changed = service.ingest(kb, [folder], encoder=encoder)
    assert changed.files_skipped == 4 and changed.chunks_done == 1
    total = service.get(project=kb.project, name=kb.name).chunks
    assert total == first.chunks_done - bike_before + 1
    hits = service.search(kb, SearchRequest(query="自行车 封顶", k=10, mode="bm25"), encoder=None).hits
    bike = [h for h in hits if h.source == "bike.md"]
    assert len(bike) == 1 and "二十元" in bike[0].text
    assert not any("96128" in h.text for h in hits)


def _chunks_of(service: KnowledgeService, kb: KbPublic, source: str) -> int:
    return next(d.chunks_done for d in service.documents(kb) if d.source == source)


def test_removed_documents_leave_search_and_come_back_on_ingest(
    service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder
) -> None:
    service.ingest(kb, [folder], encoder=encoder)
    before = service.get(project=kb.project, name=kb.name)
    query = SearchRequest(query="X1 音箱的电池容量是多少？", k=10)
    assert "x1_manual.pdf" in {h.source for h in service.search(kb, query, encoder=encoder).hits}
    pdf_chunks = _chunks_of(service, kb, "x1_manual.pdf")
    with pytest.raises(NotFound) as unknown:
        service.remove_documents(kb, ["x1_manual.pdf", "不存在.md"])
    assert unknown.value.code == "document_not_found" and "不存在.md" in str(unknown.value)
    with pytest.raises(InvalidRequest):
        service.remove_documents(kb, [])
    assert service.get(project=kb.project, name=kb.name).chunks == before.chunks  # all or none

    removed = service.remove_documents(kb, ["x1_manual.pdf", "bike.md", "x1_manual.pdf"])
    assert [d.source for d in removed] == ["bike.md", "x1_manual.pdf"]
    after = service.get(project=kb.project, name=kb.name)
    assert after.documents == before.documents - 2
    assert after.chunks == before.chunks - pdf_chunks - removed[0].chunks_done
    # The cached snapshot moves to the new revision without the removed chunks (dense and BM25).
    hits = service.search(kb, query, encoder=encoder).hits
    assert hits and not {h.source for h in hits} & {"x1_manual.pdf", "bike.md"}
    bm25 = service.search(kb, SearchRequest(query="自行车 骑行", k=10, mode="bm25"), encoder=None).hits
    assert "bike.md" not in {h.source for h in bm25}
    # The folder still has them: the next ingest adds them back (and skips the unchanged rest).
    again = service.ingest(kb, [folder], encoder=encoder)
    assert again.files_skipped == 3 and again.files_done == 5
    assert service.get(project=kb.project, name=kb.name).chunks == before.chunks
    assert service.search(kb, query, encoder=encoder).hits[0].source == "x1_manual.pdf"


def test_filters_restrict_results(
    service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder
) -> None:
    service.ingest(kb, [folder / "library.md"], encoder=encoder, tags=["城市"])
    service.ingest(kb, [folder / "x1_manual.pdf"], encoder=encoder, tags=["产品"])
    only = SearchRequest(query="开放时间 电池", k=10, filters=SearchFilters(tags=["产品"]))
    assert {h.source for h in service.search(kb, only, encoder=encoder).hits} == {"x1_manual.pdf"}
    by_source = SearchRequest(query="开放时间 电池", k=10, filters=SearchFilters(sources=["lib*"]))
    assert {h.source for h in service.search(kb, by_source, encoder=encoder).hits} == {"library.md"}


def test_mmr_diversifies(service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder) -> None:
    service.ingest(kb, [folder], encoder=encoder)
    plain = service.search(kb, SearchRequest(query="图书馆 借阅", k=4), encoder=encoder)
    diverse = service.search(kb, SearchRequest(query="图书馆 借阅", k=4, mmr=True), encoder=encoder)
    assert len(diverse.hits) == 4 and diverse.hits[0].chunk_id == plain.hits[0].chunk_id


def test_bad_files_are_reported_not_fatal(
    service: KnowledgeService, kb: KbPublic, tmp_path: Path, encoder: HashEncoder
) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf")
    (tmp_path / "ok.txt").write_text("一段中文。", encoding="utf-8")
    result = service.ingest(kb, [tmp_path], encoder=encoder)
    assert result.files_failed == 1 and "broken.pdf" in result.errors[0] and result.chunks_done == 1
    with pytest.raises(InvalidRequest, match="no such file"):
        service.ingest(kb, [tmp_path / "missing"], encoder=encoder)


def test_names_conflicts_and_access(service: KnowledgeService, kb: KbPublic, project: str) -> None:
    with pytest.raises(Conflict):
        service.create(KbCreate(name="docs"), project=project)
    with pytest.raises(NotFound):
        service.get(project=project, name="nope")
    assert service.resolve("docs").id == kb.id and service.resolve("acme/bot/docs").id == kb.id
    with pytest.raises(ValueError):
        KbCreate(name="bad name/x")
    check_access(kb, "viewer", "read")
    with pytest.raises(PolicyDenied, match=r"kb\.acl"):
        check_access(kb, "viewer", "write")
    private = service.create(
        KbCreate(name="私有", settings={"read_roles": ["org_admin"], "write_roles": ["org_admin"]}),  # type: ignore[arg-type]
        project=project,
    )
    with pytest.raises(PolicyDenied):
        check_access(private, "developer", "read")
    assert [k.name for k in service.list()] == ["docs", "私有"]


def test_export_import_round_trip(
    db: Database, service: KnowledgeService, kb: KbPublic, folder: Path, encoder: HashEncoder, tmp_path: Path
) -> None:
    service.ingest(kb, [folder], encoder=encoder)
    archive = tmp_path / "out" / "docs.zip"
    manifest = export_kb(db, kb, archive)
    copy = import_kb(db, service, archive, project=kb.project, name="docs-copy")
    assert copy.chunks == manifest["chunks"] == service.get(project=kb.project, name="docs").chunks
    assert copy.settings == kb.settings
    query = SearchRequest(query="X1 音箱保修多久", k=3)
    original = [(h.source, h.text) for h in service.search(kb, query, encoder=encoder).hits]
    imported = [(h.source, h.text) for h in service.search(copy, query, encoder=encoder).hits]
    assert original == imported
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(InvalidRequest):
        import_kb(db, service, tmp_path / "junk.zip", project=kb.project)


def test_an_interrupted_ingest_resumes_without_duplicates_or_losses(
    service: KnowledgeService, kb: KbPublic, folder: Path
) -> None:
    class Crashing(HashEncoder):
        def encode(self, texts, *, kind="passage"):  # type: ignore[no-untyped-def]
            if self.calls == 4:
                raise KeyboardInterrupt  # like a kill between two batches
            return super().encode(texts, kind=kind)

    with pytest.raises(KeyboardInterrupt):
        service.ingest(kb, [folder], encoder=Crashing(), batch_size=2)
    assert service.progress[kb.id].state == "failed"
    partial = [d for d in service.documents(kb) if d.status == "partial"]
    assert len(partial) == 1 and 0 < partial[0].chunks_done < partial[0].chunks_total
    encoder = HashEncoder()
    resumed = service.ingest(kb, [folder], encoder=encoder)
    assert resumed.chunks_resumed == partial[0].chunks_done and resumed.files_failed == 0
    fresh = service.create(KbCreate(name="fresh", settings=kb.settings), project=kb.project)
    clean = service.ingest(fresh, [folder], encoder=HashEncoder())
    assert service.get(project=kb.project, name="docs").chunks == clean.chunks_done
    query = SearchRequest(query="自行车 封顶 十元", k=20, mode="bm25")
    assert [h.text for h in service.search(kb, query, encoder=None).hits] == [
        h.text for h in service.search(fresh, query, encoder=None).hits
    ]
    assert all(d.status == "done" for d in service.documents(kb))
