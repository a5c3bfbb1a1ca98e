"""OCR for scanned PDFs and images: an optional plugin over the Tesseract command-line tool.

Tesseract is a system package (Debian: ``tesseract-ocr tesseract-ocr-chi-sim``); when it is not
installed, a scanned file fails with a message saying so instead of being ingested empty.
Rendering PDF pages to images needs ``pdftoppm`` (poppler-utils) as well.

A PDF is read page by page, one Tesseract process per core (Tesseract runs one page on one
thread), and each page's text is kept under ``$STRATUM_HOME/cache/ocr/`` (keyed by the PDF's
sha256, ``STRATUM_KB_OCR_LANGUAGES`` and the page number): OCR is seconds per page, so a killed
ingest of a long scan resumes without reading its pages again. The cache holds plain text and is
safe to delete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from stratum.errors import InvalidRequest
from stratum.knowledge.extract import Block, paragraphs
from stratum.settings import Settings

DPI = 200


def available() -> bool:
    return shutil.which("tesseract") is not None and shutil.which("pdftoppm") is not None


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InvalidRequest(
            f"this file has no text layer and OCR is not installed: install {package} "
            f"(e.g. apt-get install {package}) to ingest scanned documents",
            code="ocr_not_installed",
        )
    return path


def _tesseract(image: Path, langs: str) -> str:
    tesseract = _require("tesseract", "tesseract-ocr tesseract-ocr-chi-sim")
    result = subprocess.run(
        [tesseract, str(image), "stdout", "-l", langs],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # One thread per process: pages run in parallel instead.
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    if result.returncode != 0:
        raise InvalidRequest(f"tesseract failed: {result.stderr.strip()[:200]}")
    return result.stdout


def ocr_image(data: bytes, page: int | None = None) -> list[Block]:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "page.png"
        image.write_bytes(data)
        return paragraphs(_tesseract(image, Settings().kb_ocr_languages), page)


def ocr_pdf(
    data: bytes,
    pages: Sequence[int],
    *,
    required: bool = True,
    cache: Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Block]:
    """Blocks of the given 1-based ``pages``, in page order. ``cache``: where page texts are kept
    (default ``$STRATUM_HOME/cache/ocr``); a cached page needs neither Tesseract nor pdftoppm. Without
    ``required``, pages that would need a missing Tesseract are left out instead of failing.
    ``progress(done, total)`` is called on this thread as pages finish."""
    settings = Settings()
    langs = settings.kb_ocr_languages  # STRATUM_KB_OCR_LANGUAGES
    # Keyed by the languages too: other language data read the same page differently.
    folder = (cache or settings.home / "cache" / "ocr") / hashlib.sha256(data).hexdigest() / langs
    readable = required or available()
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "doc.pdf"
        pdf.write_bytes(data)

        def one(page: int) -> str:
            kept = folder / f"{page}.txt"
            if kept.is_file():
                return kept.read_text(encoding="utf-8")
            if not readable:
                return ""
            _require("tesseract", "tesseract-ocr tesseract-ocr-chi-sim")  # the more useful message first
            pdftoppm = _require("pdftoppm", "poppler-utils")
            stem = Path(tmp) / f"p{page}"
            page_range = ["-f", str(page), "-l", str(page), "-singlefile"]
            rendered = subprocess.run(
                [pdftoppm, "-r", str(DPI), *page_range, "-png", str(pdf), str(stem)],
                timeout=600,
                capture_output=True,
                text=True,
                check=False,
            )
            if rendered.returncode != 0:
                message = rendered.stderr.strip()[:200]
                raise InvalidRequest(f"pdftoppm could not render page {page}: {message}")
            text = _tesseract(stem.with_suffix(".png"), langs)
            folder.mkdir(parents=True, exist_ok=True)
            partial = kept.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text, encoding="utf-8")
            partial.replace(kept)  # whole or absent: a kill never leaves half a page
            return text

        count = max(1, min(workers or os.cpu_count() or 1, len(pages)))
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(one, page) for page in pages]
            for done, _ in enumerate(as_completed(futures), start=1):
                if progress is not None:
                    progress(done, len(pages))
            texts = [future.result() for future in futures]
    return [block for page, text in zip(pages, texts, strict=True) for block in paragraphs(text, page)]
