"""URL ingest: fetching with limits (scheme, private addresses, content type, size, timeout,
redirects) from a loopback server with Chinese pages, main-text extraction, the URL as source;
saved pages keeping their canonical URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratum.errors import InvalidRequest
from stratum.knowledge.schemas import KbPublic, SearchRequest
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.web import check_url, fetch_pages, page_url
from tests.knowledge.conftest import HashEncoder
from tests.knowledge.pages import ARTICLE, TEA, serving


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serving() as base:
        yield base


def _fetch(urls: list[str], tmp_path: Path, **kw: object) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    options = {"timeout": 5.0, "max_bytes": 1_000_000, "allow_private": True} | kw
    return fetch_pages(urls, tmp_path / "pages", **options)  # type: ignore[arg-type]


def test_only_absolute_http_urls() -> None:
    for bad in ("file:///etc/passwd", "ftp://a.example/x", "/relative", "http://", "javascript:alert(1)"):
        with pytest.raises(InvalidRequest, match="http"):
            check_url(bad)
    assert check_url(" https://例子.cn/页面 ") == "https://例子.cn/页面"


def test_fetch_keeps_pages_and_names_every_refusal(site: str, tmp_path: Path) -> None:
    pages, errors = _fetch(
        [
            f"{site}/news/library.html",
            f"{site}/hotpot.txt",
            f"{site}/moved",
            f"{site}/logo.png",
            f"{site}/missing",
            f"{site}/big.html",
        ],
        tmp_path,
    )
    assert [(p.url.removeprefix(site), p.path.suffix) for p in pages] == [
        ("/news/library.html", ".html"),
        ("/hotpot.txt", ".txt"),
        ("/moved", ".html"),  # followed to /tea
    ]
    assert pages[2].path.read_bytes() == TEA.encode()
    assert len(errors) == 3
    assert "content type 'image/png' is not a page" in errors[0]
    assert "HTTP 404" in errors[1]
    assert "over the 1000000-byte limit" in errors[2]


def test_private_addresses_timeouts_and_redirect_limits(site: str, tmp_path: Path) -> None:
    pages, errors = _fetch([f"{site}/tea"], tmp_path, allow_private=False)
    assert (
        pages == [] and "private or loopback" in errors[0] and "STRATUM_KB_FETCH_ALLOW_PRIVATE" in errors[0]
    )
    pages, errors = _fetch([f"{site}/slow"], tmp_path, timeout=0.5)
    assert pages == [] and "timed out" in errors[0]


def test_page_url_reads_canonical_then_og_url() -> None:
    assert page_url(ARTICLE.encode()) == "https://news.example.cn/library/2024"
    assert page_url(TEA.encode()) == "https://tea.example.cn/longjing"
    assert page_url(b"<html><head><link rel='canonical' href='/relative'></head></html>") is None
    assert page_url(b"\xff\xfe not html at all") is None


def test_urls_and_saved_pages_are_ingested_with_their_url_as_source(
    site: str, tmp_path: Path, service: KnowledgeService, kb: KbPublic, encoder: HashEncoder
) -> None:
    pages, failed = _fetch([f"{site}/news/library.html", f"{site}/logo.png"], tmp_path)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "longjing.html").write_text(TEA, encoding="utf-8")
    (saved / "notes.html").write_text(
        "<html><body><p>没有规范链接的本地笔记，记录会议室预订规则。</p></body></html>", encoding="utf-8"
    )
    result = service.ingest(
        kb,
        [saved, *(p.path for p in pages)],
        encoder=encoder,
        sources={p.path: p.url for p in pages},
        failed=failed,
    )
    assert result.files_total == 4 and result.files_failed == 1 and "image/png" in result.errors[0]
    sources = {d.source for d in service.documents(kb)}
    assert sources == {f"{site}/news/library.html", "https://tea.example.cn/longjing", "notes.html"}
    hits = service.search(
        kb, SearchRequest(query="图书馆 开放时间 延长", k=1, mode="bm25"), encoder=encoder
    ).hits
    assert hits[0].source == f"{site}/news/library.html" and "晚上九点" in hits[0].text
    # trafilatura keeps the article, not the navigation or the footer
    texts = " ".join(
        h.text
        for h in service.search(
            kb, SearchRequest(query="首页 版权所有", k=10, mode="bm25"), encoder=encoder
        ).hits
    )
    assert "网站地图" not in texts and "备案号" not in texts
    # Fetching the same page again: unchanged, skipped.
    again, _ = _fetch([f"{site}/news/library.html"], tmp_path / "2")
    second = service.ingest(
        kb, [p.path for p in again], encoder=encoder, sources={p.path: p.url for p in again}
    )
    assert second.files_skipped == 1
