"""Knowledge-base tables (migration 0008): bases, their documents, and the chunks with their vectors.

The database is the source of truth for a KB: every chunk row carries its text, its metadata
(source, page, heading path), its lexical tokens and its embedding. The ANN and BM25 indexes are
caches rebuilt from these rows (``kb_bases.revision`` says when they are stale), so a KB survives
a crash, an upgrade or an export/import without a separate index to keep consistent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class KnowledgeBaseRow(Base):
    __tablename__ = "kb_bases"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(512))
    # Chunking, embedding, retrieval and answering settings (``schemas.KbSettings``).
    settings: Mapped[dict[str, Any]] = mapped_column()
    # Bumped by every committed change to the KB's chunks: cached indexes compare against it.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbDocumentRow(Base):
    """One ingested file. ``status`` is ``partial`` while its chunks are being written in batches."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("kb_id", "source"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("kb_bases.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(512))
    # sha256 of the file's bytes and of the chunking settings: equal means nothing to redo.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    doc_date: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbChunkRow(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("kb_bases.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    page: Mapped[int | None] = mapped_column(Integer)
    heading_path: Mapped[list[Any]] = mapped_column(default=list)
    kind: Mapped[str] = mapped_column(String(16))
    # Lexical tokens (jieba for Chinese, words for English), space-joined: BM25 is rebuilt from them
    # without re-running jieba, the slowest part of tokenising.
    tokens: Mapped[str] = mapped_column(Text)
    # float32 little-endian, L2-normalised.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
