"""Text extraction per file format, into structural blocks (headings, paragraphs, tables).

One well-kept library per format, each imported only when a file of its kind shows up:
pypdf (PDF, Chinese included), python-docx (DOCX), trafilatura (HTML main text; it needs
``lxml_html_clean`` beside lxml 6), markdown-it-py (Markdown), openpyxl (XLSX); TXT and CSV need
nothing. Scanned PDFs and images go through Tesseract when it is installed (``ocr.py``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from stratum.errors import InvalidRequest

BlockKind = Literal["heading", "text", "table"]
INSTALL_HINT = "pip install 'stratum[knowledge]'"
SUFFIXES = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}
# A table with more rows than this is cut into groups of rows, each repeating the header row.
TABLE_ROWS_PER_BLOCK = 40


@dataclass
class Block:
    kind: BlockKind
    text: str
    page: int | None = None
    level: int = 0  # headings: 1 for the top level


@dataclass
class Extracted:
    blocks: list[Block] = field(default_factory=list)
    pages: int = 1


def supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def extract(path: Path, data: bytes, *, ocr_progress: Callable[[int, int], None] | None = None) -> Extracted:
    """Blocks of ``data`` (the bytes of ``path``), dispatched on the file suffix.
    ``ocr_progress(done, total)``: pages of a scanned PDF read so far (OCR takes seconds a page)."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidRequest(f"unsupported file type {path.suffix or '(none)'}: {path.name}", param="paths")
    reader = {
        "pdf": partial(_pdf, ocr_progress=ocr_progress),
        "docx": _docx,
        "html": _html,
        "markdown": _markdown,
        "text": _text,
        "csv": _csv,
        "xlsx": _xlsx,
        "image": _image,
    }[kind]
    try:
        return reader(data)
    except (InvalidRequest, ImportError):
        raise
    except Exception as exc:  # a parser's own error types: a corrupt or unsupported file
        raise InvalidRequest(
            f"could not read {path.name}: {type(exc).__name__}: {exc}", param="paths"
        ) from exc


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def paragraphs(text: str, page: int | None = None) -> list[Block]:
    """Blank-line separated paragraphs; single newlines inside one are joined (no space for CJK)."""
    blocks = []
    for raw in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in raw.split("\n") if line.strip()]
        if not lines:
            continue
        joined = lines[0]
        for line in lines[1:]:
            cjk_join = _is_cjk(joined[-1]) or _is_cjk(line[0])
            joined += ("" if cjk_join else " ") + line
        blocks.append(Block("text", joined, page))
    return blocks


def _is_cjk(char: str) -> bool:
    return "\u3000" <= char <= "\u9fff" or "\uff00" <= char <= "\uffef"


def _text(data: bytes) -> Extracted:
    return Extracted(paragraphs(_decode(data)))


def _markdown(data: bytes) -> Extracted:
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise ImportError(f"Markdown ingestion needs markdown-it-py: {INSTALL_HINT}") from exc
    source = _decode(data)
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(source)
    lines = source.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            level = int(token.tag[1])
            blocks.append(Block("heading", tokens[i + 1].content.strip(), None, level))
            i += 3
            continue
        if token.type == "table_open" and token.map:
            start, end = token.map
            blocks.extend(_table_blocks([_md_row(line) for line in lines[start:end] if not _md_rule(line)]))
            while tokens[i].type != "table_close":
                i += 1
        elif token.type in ("paragraph_open", "fence", "code_block") and token.map and token.level == 0:
            start, end = token.map
            blocks.extend(paragraphs("\n".join(lines[start:end])))
        elif token.type in ("bullet_list_open", "ordered_list_open", "blockquote_open") and token.level == 0:
            # Lists and quotes stay one block: their items belong together.
            if token.map:
                start, end = token.map
                text = "\n".join(line.strip() for line in lines[start:end] if line.strip())
                blocks.append(Block("text", text))
            depth = 1
            i += 1
            while i < len(tokens) and depth:
                if tokens[i].type == token.type:
                    depth += 1
                elif tokens[i].type == token.type.replace("_open", "_close"):
                    depth -= 1
                i += 1
            continue
        i += 1
    return Extracted(blocks)


def _md_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _md_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*", line))


def _table_blocks(rows: list[list[str]], page: int | None = None) -> list[Block]:
    """A table as text rows ``a | b | c``; long tables cut into row groups that repeat the header."""
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    blocks = []
    for start in range(0, max(len(body), 1), TABLE_ROWS_PER_BLOCK):
        group = [header, *body[start : start + TABLE_ROWS_PER_BLOCK]]
        blocks.append(Block("table", "\n".join(" | ".join(cell for cell in row) for row in group), page))
    return blocks


def _pdf(data: bytes, ocr_progress: Callable[[int, int], None] | None = None) -> Extracted:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise ImportError(f"PDF ingestion needs pypdf: {INSTALL_HINT}") from exc
    reader = PdfReader(io.BytesIO(data))
    blocks: list[Block] = []
    empty_pages = []
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text() or ""
        if not text.strip():
            empty_pages.append(number)
            continue
        blocks.extend(_pdf_page_blocks(text, number))
    if empty_pages:
        from stratum.knowledge import ocr

        # A scan: OCR it (or say OCR is missing). A text PDF with some scanned pages: those are
        # read when Tesseract is installed (or were read before), else left out.
        scanned = ocr.ocr_pdf(
            data, empty_pages, required=len(empty_pages) == len(reader.pages), progress=ocr_progress
        )
        blocks = sorted([*blocks, *scanned], key=lambda b: b.page or 0)
    return Extracted(blocks, pages=len(reader.pages))


def _pdf_page_blocks(text: str, page: int) -> list[Block]:
    # pypdf puts a newline at every line end of the page layout; a line that ends a sentence (or
    # is short, like a heading) ends a paragraph, the others continue it.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    blocks: list[Block] = []
    current = ""
    for line in lines:
        if _looks_like_heading(line):
            if current:
                blocks.append(Block("text", current, page))
                current = ""
            blocks.append(Block("heading", line.lstrip("#").strip(), page, _heading_level(line)))
            continue
        glue = "" if not current or _is_cjk(current[-1]) or _is_cjk(line[0]) else " "
        current += glue + line
        if line[-1] in "。！？!?.":
            blocks.append(Block("text", current, page))
            current = ""
    if current:
        blocks.append(Block("text", current, page))
    return blocks


_NUMBERED_HEADING = re.compile(r"^(第[一二三四五六七八九十百0-9]+[章节部分条]|[0-9]+(\.[0-9]+)*[、.\s])\s*\S")


def _looks_like_heading(line: str) -> bool:
    return len(line) <= 30 and line[-1] not in "。！？；，,.;:：" and bool(_NUMBERED_HEADING.match(line))


def _heading_level(line: str) -> int:
    if re.match(r"^第\S+?[节条]", line):
        return 2
    match = re.match(r"^([0-9]+(?:\.[0-9]+)*)", line)
    return match.group(1).count(".") + 1 if match else 1


def _docx(data: bytes) -> Extracted:
    try:
        import docx
    except ImportError as exc:
        raise ImportError(f"DOCX ingestion needs python-docx: {INSTALL_HINT}") from exc
    document = docx.Document(io.BytesIO(data))
    blocks: list[Block] = []
    body = document.element.body
    tables = {id(t._tbl): t for t in document.tables}
    paras = {id(p._p): p for p in document.paragraphs}
    for child in body.iterchildren():
        if id(child) in paras:
            para = paras[id(child)]
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            match = re.match(r"Heading (\d)", style) or re.match(r"标题 ?(\d)", style)
            if match or style == "Title":
                blocks.append(Block("heading", text, None, int(match.group(1)) if match else 1))
            else:
                blocks.append(Block("text", text))
        elif id(child) in tables:
            rows = [[cell.text.strip() for cell in row.cells] for row in tables[id(child)].rows]
            blocks.extend(_table_blocks(rows))
    return Extracted(blocks)


def _html(data: bytes) -> Extracted:
    try:
        import trafilatura
    except ImportError as exc:
        raise ImportError(f"HTML ingestion needs trafilatura and lxml_html_clean: {INSTALL_HINT}") from exc
    # Markdown output keeps headings and tables, which the Markdown reader then structures.
    text = trafilatura.extract(
        _decode(data),
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    if not text:
        return Extracted([])
    return _markdown(text.encode("utf-8"))


def _csv(data: bytes) -> Extracted:
    text = _decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    return Extracted(_table_blocks(rows))


def _xlsx(data: bytes) -> Extracted:
    try:
        import openpyxl
    except ImportError as exc:
        raise ImportError(f"XLSX ingestion needs openpyxl: {INSTALL_HINT}") from exc
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    blocks: list[Block] = []
    for number, sheet in enumerate(workbook.worksheets, start=1):
        rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        if not rows:
            continue
        blocks.append(Block("heading", sheet.title, number, 1))
        blocks.extend(_table_blocks(rows, number))
    workbook.close()
    return Extracted(blocks, pages=max(len(workbook.worksheets), 1))


def _image(data: bytes) -> Extracted:
    from stratum.knowledge.ocr import ocr_image

    return Extracted(ocr_image(data))


def iter_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Supported files under ``paths`` (files or folders), each with its source name, sorted.

    The source name is the path relative to the folder given (the file name for a single file):
    it is what citations show and what identifies the document on the next ingest.
    """
    found: list[tuple[Path, str]] = []
    for root in paths:
        if root.is_file():
            found.append((root, root.name))
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and supported(path) and not path.name.startswith("."):
                    found.append((path, path.relative_to(root).as_posix()))
        else:
            raise InvalidRequest(f"no such file or folder: {root}", param="paths")
    return found
