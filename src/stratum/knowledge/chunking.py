"""Structure-aware chunking: blocks → chunks of at most ``size`` tokens with ``overlap``.

Rules, in order:

1. A heading starts a new chunk and updates the heading path (``["第一章", "1.2 安装"]``) that
   every later chunk carries, until a heading of the same or a higher level replaces it.
2. Paragraphs are packed whole into the current chunk while they fit.
3. A table is kept whole when it fits in one chunk (it is never merged with prose); a bigger one
   was already cut into row groups that repeat the header (``extract.TABLE_ROWS_PER_BLOCK``) and
   each group is split by rows if still too big.
4. A paragraph larger than a chunk is split at sentence ends (。！？； . ! ?), and a sentence larger
   than a chunk at a hard token boundary.
5. Consecutive chunks of the same section share ``overlap`` tokens of trailing sentences, so a
   fact that straddles a boundary is whole in at least one chunk.

Pages: a new page starts a new chunk (no overlap carried across), so every chunk comes from one
page and its citation's page is exact — the page-per-document split of PDF loaders, kept across
headings and packing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.knowledge.extract import Block
from stratum.knowledge.text import _TOKEN, count_tokens, split_sentences


@dataclass
class Chunk:
    text: str
    page: int | None
    heading_path: list[str] = field(default_factory=list)
    kind: str = "text"


def chunk_blocks(blocks: list[Block], *, size: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    # Sentences or paragraphs of the chunk being built, each with "starts a paragraph".
    pieces: list[tuple[str, bool]] = []
    tokens = 0
    page: int | None = None

    def headings() -> list[str]:
        return [title for _, title in path]

    def flush(keep_overlap: bool) -> None:
        nonlocal pieces, tokens, page
        if pieces:
            chunks.append(Chunk(_join(pieces), page, headings()))
        if keep_overlap and overlap:
            carried: list[tuple[str, bool]] = []
            carried_tokens = 0
            for piece in reversed(pieces):
                n = count_tokens(piece[0])
                if carried_tokens + n > overlap:
                    break
                carried.insert(0, piece)
                carried_tokens += n
            pieces, tokens = carried, carried_tokens
        else:
            pieces, tokens = [], 0
        if not pieces:
            page = None

    def add(piece: str, piece_page: int | None, starts: bool = True) -> None:
        nonlocal tokens, page
        n = count_tokens(piece)
        if tokens > 0 and piece_page != page:
            flush(keep_overlap=False)
        elif tokens + n > size and tokens > 0:
            flush(keep_overlap=True)
            # The carried overlap plus this piece may still not fit: drop the overlap then.
            if tokens + n > size:
                flush(keep_overlap=False)
        if page is None:
            page = piece_page
        pieces.append((piece, starts))
        tokens += n

    for block in blocks:
        if block.kind == "heading":
            flush(keep_overlap=False)
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text))
            continue
        if block.kind == "table":
            flush(keep_overlap=False)
            for part in _split_table(block.text, size):
                chunks.append(Chunk(part, block.page, headings(), kind="table"))
            continue
        n = count_tokens(block.text)
        if n <= size:
            add(block.text, block.page)
            continue
        first = True
        for sentence in split_sentences(block.text):
            for part in _hard_split(sentence, size):
                add(part, block.page, first)
                first = False
    flush(keep_overlap=False)
    return [c for c in chunks if c.text.strip()]


def _join(pieces: list[tuple[str, bool]]) -> str:
    # Sentences of one paragraph join as they were (the split kept their spaces); a new
    # paragraph starts on a new line.
    out = pieces[0][0]
    for piece, starts in pieces[1:]:
        out += ("\n" + piece.lstrip()) if starts else piece
    return out.strip()


def _split_table(text: str, size: int) -> list[str]:
    if count_tokens(text) <= size:
        return [text]
    rows = text.split("\n")
    header, parts, current = rows[0], [], [rows[0]]
    for row in rows[1:]:
        if count_tokens("\n".join([*current, row])) > size and len(current) > 1:
            parts.append("\n".join(current))
            current = [header]
        current.append(row)
    parts.append("\n".join(current))
    return [p for part in parts for p in _hard_split(part, size)]


def _hard_split(text: str, size: int) -> list[str]:
    """Cut ``text`` every ``size`` tokens (a sentence longer than a whole chunk)."""
    if count_tokens(text) <= size:
        return [text]
    cuts = [m.start() for m in _TOKEN.finditer(text)]
    return [
        text[cuts[i] : cuts[i + size] if i + size < len(cuts) else len(text)]
        for i in range(0, len(cuts), size)
    ]
