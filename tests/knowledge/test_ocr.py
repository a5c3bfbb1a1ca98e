"""OCR with the real Tesseract plugin on scanned Chinese files (``corpus_ocr``: images with no
text layer, made by ``scripts/make_ocr_fixtures.py``). ``make test`` installs tesseract-ocr,
tesseract-ocr-chi-sim and poppler-utils and sets ``STRATUM_TEST_OCR=1``: there a missing tool
fails the test instead of skipping it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.knowledge.extract import extract
from stratum.knowledge.schemas import KbPublic, SearchRequest
from stratum.knowledge.service import KnowledgeService
from tests.knowledge.conftest import HashEncoder, require_ocr

SCANS = Path(__file__).parent / "corpus_ocr"


@pytest.fixture(autouse=True)
def _tesseract() -> None:
    require_ocr()


def _text(path: Path) -> dict[int | None, str]:
    pages: dict[int | None, str] = {}
    for block in extract(path, path.read_bytes()).blocks:
        pages[block.page] = pages.get(block.page, "") + block.text
    return pages


def test_a_scanned_image_and_a_scanned_pdf_are_read_page_by_page() -> None:
    image = _text(SCANS / "会议室须知.png")
    assert "小会议室每次最多预订两个小时" in image[None] and "需提前两天在行政系统中预订" in image[None]
    pdf = _text(SCANS / "档案室扫描件.pdf")
    assert sorted(pdf) == [1, 2]
    assert "借阅期限不超过十个工作日" in pdf[1] and "涉密档案" not in pdf[1]
    assert "涉密档案只能在档案室内查阅" in pdf[2]


def test_a_pdf_with_some_scanned_pages_gets_them_read_and_kept_for_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pypdf import PdfReader, PdfWriter

    from tests.knowledge.conftest import CORPUS

    mixed = PdfWriter()
    mixed.add_page(PdfReader(CORPUS / "x1_manual.pdf").pages[0])  # a text layer
    mixed.add_page(PdfReader(SCANS / "档案室扫描件.pdf").pages[1])  # an image only
    path = tmp_path / "混合.pdf"
    with path.open("wb") as out:
        mixed.write(out)
    pages = _text(path)
    assert sorted(pages) == [1, 2] and "X1" in pages[1] and "涉密档案只能在档案室内查阅" in pages[2]
    cached = list((tmp_path / "home" / "cache" / "ocr").rglob("*.txt"))
    assert [p.name for p in cached] == ["2.txt"]  # only the scanned page went through OCR

    # Without Tesseract on PATH: the kept page text still serves (a resumed ingest re-reads no page)...
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _text(path) == pages
    # ...and a mixed PDF that was never read keeps its text pages instead of failing.
    cached[0].unlink()
    assert sorted(_text(path)) == [1]


def test_the_ocr_languages_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratum.settings import Settings

    assert "涉密档案" in _text(SCANS / "档案室扫描件.pdf")[2]  # chi_sim+eng, now cached
    monkeypatch.setenv("STRATUM_KB_OCR_LANGUAGES", "eng")  # English only: the Chinese is lost
    assert "小会议室" not in _text(SCANS / "会议室须知.png")[None]
    assert "涉密档案" not in _text(SCANS / "档案室扫描件.pdf").get(2, "")  # the cache is per language set
    monkeypatch.setenv("STRATUM_KB_OCR_LANGUAGES", "chi sim")
    with pytest.raises(ValueError, match="kb_ocr_languages"):
        Settings()


def test_scanned_files_are_ingested_and_cited_with_their_page(
    service: KnowledgeService, kb: KbPublic, encoder: HashEncoder
) -> None:
    shown: list[str | None] = []
    result = service.ingest(kb, [SCANS], encoder=encoder, progress=lambda p: shown.append(p.current))
    # The progress names the page a long scan is at (OCR is seconds a page).
    assert "档案室扫描件.pdf (OCR 1/2 pages)" in shown and "档案室扫描件.pdf (OCR 2/2 pages)" in shown
    assert (result.files_done, result.files_failed, result.pages_done) == (2, 0, 3), result.errors
    hits = service.search(kb, SearchRequest(query="涉密档案 复印 拍照", k=3, mode="bm25"), encoder=None).hits
    assert (hits[0].source, hits[0].page) == ("档案室扫描件.pdf", 2)
    hits = service.search(
        kb, SearchRequest(query="小会议室 预订 几个小时", k=3, mode="bm25"), encoder=None
    ).hits
    assert hits[0].source == "会议室须知.png"
