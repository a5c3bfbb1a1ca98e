"""OCR for scanned PDFs and images: an optional plugin over the Tesseract command-line tool.

Tesseract is a system package (Debian: ``tesseract-ocr tesseract-ocr-chi-sim``); when it is not
installed, a scanned file fails with a message saying so instead of being ingested empty.
Rendering PDF pages to images needs ``pdftoppm`` (poppler-utils) as well.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from stratum.errors import InvalidRequest
from stratum.knowledge.extract import Block, paragraphs

LANGUAGES = "chi_sim+eng"


def available() -> bool:
    return shutil.which("tesseract") is not None


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InvalidRequest(
            f"this file has no text layer and OCR is not installed: install {package} "
            f"(e.g. apt-get install {package}) to ingest scanned documents",
            code="ocr_not_installed",
        )
    return path


def ocr_image(data: bytes, page: int | None = None) -> list[Block]:
    tesseract = _require("tesseract", "tesseract-ocr tesseract-ocr-chi-sim")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "page.png"
        image.write_bytes(data)
        result = subprocess.run(
            [tesseract, str(image), "stdout", "-l", LANGUAGES],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        raise InvalidRequest(f"tesseract failed: {result.stderr.strip()[:200]}")
    return paragraphs(result.stdout, page)


def ocr_pdf(data: bytes) -> list[Block]:
    _require("tesseract", "tesseract-ocr tesseract-ocr-chi-sim")
    pdftoppm = _require("pdftoppm", "poppler-utils")
    blocks: list[Block] = []
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "doc.pdf"
        pdf.write_bytes(data)
        subprocess.run(
            [pdftoppm, "-r", "200", "-png", str(pdf), str(Path(tmp) / "p")], check=True, timeout=600
        )
        for number, image in enumerate(sorted(Path(tmp).glob("p*.png")), start=1):
            blocks.extend(ocr_image(image.read_bytes(), number))
    return blocks
