"""Web pages as KB documents: fetch a URL with httpx, or read a page saved earlier, keeping its URL.

``fetch_pages`` downloads each URL (http/https only, a timeout, a size cap while streaming, a
content-type check) into a folder, one file per page with the suffix its content type calls for,
so ``extract`` handles it like any file (HTML through trafilatura's main-text extraction). The
ingest then records the URL as the document's source: citations point at the page, and fetching
the same URL again replaces its chunks only when the page changed.

``page_url`` reads the URL a saved page declares (``<link rel="canonical">`` or ``og:url``), so a
folder of already-downloaded pages is ingested with each page's URL as its source.

Private addresses: a URL whose host resolves to a loopback, private, link-local or reserved
address is refused unless ``allow_private`` (``STRATUM_KB_FETCH_ALLOW_PRIVATE``; the foreground
CLI, run by the operator, always allows it) — an API key must not make the server read its own
network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from stratum.errors import InvalidRequest

# Content types a page may have, and the suffix that makes ``extract`` read it right.
CONTENT_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "application/pdf": ".pdf",
}
USER_AGENT = "stratum-kb/0.1 (+knowledge-base ingest)"
MAX_URL_LENGTH = 512  # kb_documents.source holds 512 characters
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchedPage:
    url: str
    path: Path


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else ``InvalidRequest``."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"only absolute http:// or https:// URLs can be ingested, not {url!r}", param="urls"
        )
    return url


def _is_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise InvalidRequest(f"cannot resolve {host}: {exc.strerror}", param="urls") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            return True
    return False


def fetch_page(
    client: httpx.Client, url: str, folder: Path, *, max_bytes: int, allow_private: bool
) -> FetchedPage:
    """Download one page into ``folder``; ``InvalidRequest`` names why a page was refused."""
    url = check_url(url)
    target_url = url
    deadline = time.monotonic() + (client.timeout.read or 60.0)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            host = urlsplit(target_url).hostname or ""
            if not allow_private and _is_private(host):
                raise InvalidRequest(
                    f"{url}: {host} is a private or loopback address "
                    "(set STRATUM_KB_FETCH_ALLOW_PRIVATE=true to allow it)",
                    param="urls",
                )
            response = client.send(client.build_request("GET", target_url), stream=True)
            if response.is_redirect and "location" in response.headers:
                response.close()
                # Each hop is checked like the first: a public page cannot redirect inwards.
                target_url = check_url(str(response.url.join(response.headers["location"])))
                continue
            break
        else:
            raise InvalidRequest(f"{url}: more than {MAX_REDIRECTS} redirects", param="urls")
        try:
            if response.status_code != 200:
                raise InvalidRequest(f"{url}: HTTP {response.status_code}", param="urls")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            suffix = CONTENT_TYPES.get(content_type)
            if suffix is None:
                raise InvalidRequest(
                    f"{url}: content type {content_type or '(none)'!r} is not a page "
                    f"(accepted: {', '.join(sorted(CONTENT_TYPES))})",
                    param="urls",
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InvalidRequest(
                    f"{url}: {declared} bytes is over the {max_bytes}-byte limit", param="urls"
                )
            body = bytearray()
            for piece in response.iter_bytes():
                body.extend(piece)
                if time.monotonic() > deadline:  # httpx's timeout is per read, not per page
                    raise InvalidRequest(f"{url}: timed out", param="urls")
                if len(body) > max_bytes:
                    raise InvalidRequest(f"{url}: the page is over the {max_bytes}-byte limit", param="urls")
        finally:
            response.close()
    except httpx.TimeoutException:
        raise InvalidRequest(f"{url}: timed out", param="urls") from None
    except httpx.HTTPError as exc:
        raise InvalidRequest(f"{url}: {type(exc).__name__}: {exc}", param="urls") from None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}{suffix}"
    target.write_bytes(bytes(body))
    return FetchedPage(url=url, path=target)


def fetch_pages(
    urls: Sequence[str],
    folder: Path,
    *,
    timeout: float,
    max_bytes: int,
    allow_private: bool,
) -> tuple[list[FetchedPage], list[str]]:
    """Fetch every URL; returns the pages fetched and one error line per URL that failed."""
    pages: list[FetchedPage] = []
    errors: list[str] = []
    headers = {"user-agent": USER_AGENT, "accept": ", ".join(CONTENT_TYPES)}
    with httpx.Client(timeout=timeout, follow_redirects=False, headers=headers, trust_env=False) as client:
        for url in urls:
            try:
                pages.append(
                    fetch_page(client, url, folder, max_bytes=max_bytes, allow_private=allow_private)
                )
            except InvalidRequest as error:
                errors.append(error.message)
    return pages, errors


def page_url(data: bytes) -> str | None:
    """The http(s) URL a saved HTML page declares (canonical link, else ``og:url``), or None."""
    try:
        import lxml.html
    except ImportError:  # pragma: no cover - lxml comes with trafilatura ([knowledge])
        return None
    head = data[:262_144]
    try:
        tree = lxml.html.fromstring(head)
    except (ValueError, TypeError, lxml.etree.ParserError):
        return None
    candidates = [
        *tree.xpath('//link[contains(concat(" ", normalize-space(@rel), " "), " canonical ")]/@href'),
        *tree.xpath('//meta[@property="og:url"]/@content'),
    ]
    for candidate in candidates:
        url = str(candidate).strip()
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname and len(url) <= 512:
            return url
    return None
