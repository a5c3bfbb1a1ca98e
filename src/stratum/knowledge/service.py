"""Knowledge bases: create/list/delete, resumable ingestion, hybrid search.

``KnowledgeService`` serves the CLI (``stratum kb …``), the admin API (``/admin/v1/kb``) and
chat answering (``knowledge.answer``). Who may do what is decided by the callers through the
policy (``kb.read`` / ``kb.write`` on the KB's project) plus the KB's own role lists
(``check_access``). The encoder is passed in by the caller (the gateway's pool or the CLI's own),
so this module never loads models itself.

Ingestion is resumable because it commits in small batches: each batch of chunks is written with
the document's ``chunks_done`` counter in one transaction. A process killed mid-file leaves a
``partial`` document whose committed chunks are kept; the next run re-extracts that file (chunking
is deterministic for the same bytes and settings), skips the ``chunks_done`` chunks already stored
and continues — nothing is duplicated (``(document_id, ordinal)`` is unique) and nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from stratum.engine.base import Encoder
from stratum.errors import Conflict, InvalidRequest, NotFound, PolicyDenied
from stratum.governance.tables import OrgRow, ProjectRow
from stratum.governance.tenancy import find_project
from stratum.knowledge.chunking import chunk_blocks
from stratum.knowledge.extract import extract, iter_files
from stratum.knowledge.index import index_kind, make_index
from stratum.knowledge.retrieval import ChunkMeta, Snapshot
from stratum.knowledge.schemas import (
    ChunkHit,
    DocumentPublic,
    IngestProgress,
    KbCreate,
    KbPublic,
    KbSettings,
    KbUpdate,
    SearchRequest,
    SearchResult,
)
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow, KnowledgeBaseRow
from stratum.knowledge.text import lexical_tokens
from stratum.knowledge.web import page_url
from stratum.storage import Database, utcnow

# Chunks embedded and committed together: a kill loses at most one batch of embedding work.
INGEST_BATCH = 32
ProgressCallback = Callable[[IngestProgress], None]


def _id() -> str:
    return uuid.uuid4().hex


def kb_public(row: KnowledgeBaseRow, project: ProjectRow, org: OrgRow, counts: tuple[int, int]) -> KbPublic:
    return KbPublic(
        id=row.id,
        name=row.name,
        project=f"{org.name}/{project.name}",
        project_id=project.id,
        org_id=org.id,
        description=row.description,
        settings=KbSettings(**row.settings),
        revision=row.revision,
        documents=counts[0],
        chunks=counts[1],
        created_at=row.created_at,
    )


def check_access(kb: KbPublic, role: str, mode: str) -> None:
    """The KB's own role lists, checked after the policy allowed ``kb.<mode>`` on its project."""
    if role == "admin":
        return
    roles = kb.settings.read_roles if mode == "read" else kb.settings.write_roles
    if mode == "read" and role in kb.settings.write_roles:
        return
    if role not in roles:
        raise PolicyDenied(f"the {role} role may not {mode} knowledge base {kb.name}", rule="kb.acl")


def _source_of(path: Path, default: str, sources: Mapping[Path, str] | None) -> str:
    if sources and path in sources:
        return sources[path]
    if path.suffix.lower() in (".html", ".htm"):
        try:
            with path.open("rb") as handle:
                declared = page_url(handle.read(262_144))
        except OSError:
            declared = None
        if declared:
            return declared
    return default


# A name, not ``list[…]``: inside the class ``list`` is the method that lists KBs.
Documents = list[DocumentPublic]


def _document(r: KbDocumentRow) -> DocumentPublic:
    return DocumentPublic(
        id=r.id,
        source=r.source,
        status=r.status,
        chunks_total=r.chunks_total,
        chunks_done=r.chunks_done,
        pages=r.pages,
        tags=list(r.tags or []),
        updated_at=r.updated_at,
    )


def _meta(c: KbChunkRow, source: str, tags: Any, doc_date: datetime | None) -> ChunkMeta:
    return ChunkMeta(
        id=c.id,
        source=source,
        page=c.page,
        heading_path=list(c.heading_path or []),
        text=c.text,
        kind=c.kind,
        tags=tuple(tags or ()),
        doc_date=doc_date,
    )


class KnowledgeService:
    """Serves: the CLI, the admin API and chat answering (see the module docstring)."""

    def __init__(self, db: Database, *, home: Path | None = None) -> None:
        self._db = db
        self._home = home
        self._snapshots: dict[str, Snapshot] = {}
        self._snapshot_lock = threading.Lock()
        self._kb_locks: dict[str, threading.Lock] = {}
        # Progress of ingest runs by KB id, for the API (runs in this process only).
        self.progress: dict[str, IngestProgress] = {}

    # --- KBs -------------------------------------------------------------------------------

    def create(self, spec: KbCreate, *, project: str) -> KbPublic:
        with self._db.session() as session:
            org, proj = find_project(session, project)
            exists = session.scalar(
                select(KnowledgeBaseRow).where(
                    KnowledgeBaseRow.project_id == proj.id, KnowledgeBaseRow.name == spec.name
                )
            )
            if exists is not None:
                raise Conflict(f"project {project} already has a knowledge base {spec.name!r}", param="name")
            row = KnowledgeBaseRow(
                id=_id(),
                project_id=proj.id,
                name=spec.name,
                description=spec.description,
                settings=spec.settings.model_dump(mode="json"),
                revision=0,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return kb_public(row, proj, org, (0, 0))

    def list(self, *, org_id: str | None = None, project_id: str | None = None) -> list[KbPublic]:
        with self._db.session(write=False) as session:
            query = (
                select(KnowledgeBaseRow, ProjectRow, OrgRow)
                .join(ProjectRow, ProjectRow.id == KnowledgeBaseRow.project_id)
                .join(OrgRow, OrgRow.id == ProjectRow.org_id)
                .order_by(OrgRow.name, ProjectRow.name, KnowledgeBaseRow.name)
            )
            if org_id is not None:
                query = query.where(OrgRow.id == org_id)
            if project_id is not None:
                query = query.where(ProjectRow.id == project_id)
            rows = session.execute(query).all()
            return [kb_public(kb, p, o, self._counts(session, kb.id)) for kb, p, o in rows]

    def get(self, *, project: str, name: str) -> KbPublic:
        """The KB ``name`` of ``project`` (ORG/PROJECT)."""
        with self._db.session(write=False) as session:
            org, proj = find_project(session, project)
            row = session.scalar(
                select(KnowledgeBaseRow).where(
                    KnowledgeBaseRow.project_id == proj.id, KnowledgeBaseRow.name == name
                )
            )
            if row is None:
                raise NotFound(f"project {project} has no knowledge base {name!r}", code="kb_not_found")
            return kb_public(row, proj, org, self._counts(session, row.id))

    def get_by_id(self, kb_id: str) -> KbPublic:
        with self._db.session(write=False) as session:
            found = session.execute(
                select(KnowledgeBaseRow, ProjectRow, OrgRow)
                .join(ProjectRow, ProjectRow.id == KnowledgeBaseRow.project_id)
                .join(OrgRow, OrgRow.id == ProjectRow.org_id)
                .where(KnowledgeBaseRow.id == kb_id)
            ).first()
            if found is None:
                raise NotFound(f"no knowledge base with id {kb_id!r}", code="kb_not_found")
            row, proj, org = found
            return kb_public(row, proj, org, self._counts(session, row.id))

    def resolve(self, ref: str) -> KbPublic:
        """``ORG/PROJECT/NAME``, or a bare ``NAME`` that only one project uses (CLI convenience)."""
        parts = ref.split("/")
        if len(parts) == 3:
            return self.get(project=f"{parts[0]}/{parts[1]}", name=parts[2])
        if len(parts) != 1:
            raise InvalidRequest(f"a knowledge base is NAME or ORG/PROJECT/NAME, not {ref!r}", param="kb")
        matches = [kb for kb in self.list() if kb.name == ref]
        if not matches:
            raise NotFound(f"no knowledge base {ref!r}", code="kb_not_found")
        if len(matches) > 1:
            names = ", ".join(kb.ref for kb in matches)
            raise InvalidRequest(f"{ref!r} is ambiguous ({names}): use ORG/PROJECT/NAME", param="kb")
        return matches[0]

    def update(self, kb: KbPublic, change: KbUpdate) -> KbPublic:
        with self._db.session() as session:
            row = session.get(KnowledgeBaseRow, kb.id)
            if row is None:
                raise NotFound(f"knowledge base {kb.name!r} was deleted", code="kb_not_found")
            merged = {**row.settings, **change.settings}
            try:
                settings = KbSettings.model_validate(merged)
            except ValueError as exc:
                raise InvalidRequest(f"invalid settings: {exc}", param="settings") from exc
            if (
                settings.embedding_model != row.settings.get("embedding_model")
                and self._counts(session, kb.id)[1]
            ):
                raise InvalidRequest(
                    "the embedding model of a KB with chunks cannot change: create a new KB and ingest again",
                    param="settings.embedding_model",
                )
            row.settings = settings.model_dump(mode="json")
            if change.description is not None:
                row.description = change.description
            # Retrieval settings (index kind) are part of the snapshot: make it rebuild.
            row.revision += 1
        with self._snapshot_lock:
            self._snapshots.pop(kb.id, None)
        return self.get(project=kb.project, name=kb.name)

    def delete(self, kb: KbPublic) -> None:
        with self._db.session() as session:
            session.execute(delete(KbChunkRow).where(KbChunkRow.kb_id == kb.id))
            session.execute(delete(KbDocumentRow).where(KbDocumentRow.kb_id == kb.id))
            session.execute(delete(KnowledgeBaseRow).where(KnowledgeBaseRow.id == kb.id))
        with self._snapshot_lock:
            self._snapshots.pop(kb.id, None)

    def remove_documents(self, kb: KbPublic, sources: Sequence[str]) -> Documents:
        """Remove documents (by source) with their chunks, in one transaction: all of them, or
        none and ``NotFound`` naming those the KB does not hold."""
        wanted = list(dict.fromkeys(sources))
        if not wanted:
            raise InvalidRequest("name at least one document source to remove", param="source")
        with self._db.session() as session:
            rows = session.scalars(
                select(KbDocumentRow).where(KbDocumentRow.kb_id == kb.id, KbDocumentRow.source.in_(wanted))
            ).all()
            missing = sorted(set(wanted) - {r.source for r in rows})
            if missing:
                raise NotFound(
                    f"knowledge base {kb.name} has no document {', '.join(map(repr, missing))}",
                    param="source",
                    code="document_not_found",
                )
            removed = [_document(r) for r in sorted(rows, key=lambda r: r.source)]
            ids = [r.id for r in rows]
            session.execute(delete(KbChunkRow).where(KbChunkRow.document_id.in_(ids)))
            session.execute(delete(KbDocumentRow).where(KbDocumentRow.id.in_(ids)))
            self._bump(session, kb.id)
        return removed

    def documents(self, kb: KbPublic) -> Documents:
        with self._db.session(write=False) as session:
            rows = session.scalars(
                select(KbDocumentRow).where(KbDocumentRow.kb_id == kb.id).order_by(KbDocumentRow.source)
            ).all()
            return [_document(r) for r in rows]

    @staticmethod
    def _counts(session: Session, kb_id: str) -> tuple[int, int]:
        documents = session.scalar(select(func.count()).where(KbDocumentRow.kb_id == kb_id)) or 0
        chunks = session.scalar(select(func.count()).where(KbChunkRow.kb_id == kb_id)) or 0
        return int(documents), int(chunks)

    # --- ingestion -------------------------------------------------------------------------

    def ingest(
        self,
        kb: KbPublic,
        paths: Sequence[Path],
        *,
        encoder: Encoder,
        tags: Sequence[str] = (),
        doc_date: datetime | None = None,
        progress: ProgressCallback | None = None,
        batch_size: int = INGEST_BATCH,
        sources: Mapping[Path, str] | None = None,
        failed: Sequence[str] = (),
    ) -> IngestProgress:
        """Ingest files and folders; unchanged files are skipped, changed ones replaced, partial
        ones resumed. Returns the final progress (``files_failed`` counts files that could not be
        read; their errors are listed).

        A file's source (its identity in the KB and in citations) is its name relative to the
        folder given, ``sources[path]`` when given (a fetched page: its URL), or the URL a saved
        HTML page declares (canonical link / ``og:url``). ``failed`` are error lines of items that
        failed before ingest (URLs that could not be fetched), counted as failed files."""
        settings = kb.settings
        files = iter_files([Path(p) for p in paths])
        state = IngestProgress(
            kb=kb.name,
            state="running",
            files_total=len(files) + len(failed),
            files_done=len(failed),
            files_failed=len(failed),
            errors=list(failed),
            started_at=utcnow(),
        )
        self.progress[kb.id] = state
        sizes = {path: path.stat().st_size for path, _ in files}
        bytes_total = sum(sizes.values()) or 1
        bytes_done = 0
        started = time.perf_counter()
        config = json.dumps(
            [settings.chunk_size, settings.chunk_overlap, settings.embedding_model, encoder.dimensions]
        )

        def report() -> None:
            state.elapsed_s = time.perf_counter() - started
            fraction = bytes_done / bytes_total
            state.eta_s = state.elapsed_s * (1 - fraction) / fraction if fraction > 0 else None
            if progress is not None:
                progress(state)

        report()
        try:
            for path, source in files:
                source = _source_of(path, source, sources)
                state.current = source
                report()
                try:
                    self._ingest_file(
                        kb, path, source, config, encoder, tags, doc_date, state, report, batch_size
                    )
                except (InvalidRequest, ImportError, OSError, ValueError) as error:
                    state.files_failed += 1
                    message = getattr(error, "message", None) or str(error)
                    state.errors.append(f"{source}: {message}")
                bytes_done += sizes[path]
                state.files_done += 1
                report()
        except BaseException:
            state.state = "failed"
            state.finished_at = utcnow()
            report()
            raise
        state.current = None
        state.state = "done"
        state.finished_at = utcnow()
        report()
        return state

    def _ingest_file(
        self,
        kb: KbPublic,
        path: Path,
        source: str,
        config: str,
        encoder: Encoder,
        tags: Sequence[str],
        doc_date: datetime | None,
        state: IngestProgress,
        report: Callable[[], None],
        batch_size: int,
    ) -> None:
        data = path.read_bytes()
        fingerprint = hashlib.sha256(data + config.encode()).hexdigest()
        with self._db.session(write=False) as session:
            doc = session.scalar(
                select(KbDocumentRow).where(KbDocumentRow.kb_id == kb.id, KbDocumentRow.source == source)
            )
            known = (doc.id, doc.fingerprint, doc.status, doc.chunks_done) if doc else None
        if known and known[1] == fingerprint and known[2] == "done":
            state.files_skipped += 1
            return

        def ocr_progress(done: int, total: int) -> None:
            state.current = f"{source} (OCR {done}/{total} pages)"
            report()

        extracted = extract(path, data, ocr_progress=ocr_progress)
        state.current = source
        chunks = chunk_blocks(
            extracted.blocks, size=kb.settings.chunk_size, overlap=kb.settings.chunk_overlap
        )
        with self._db.session() as session:
            if known is None or known[1] != fingerprint:
                if known is not None:  # changed file: its old chunks go, in this same transaction
                    session.execute(delete(KbChunkRow).where(KbChunkRow.document_id == known[0]))
                    session.execute(delete(KbDocumentRow).where(KbDocumentRow.id == known[0]))
                doc_id = _id()
                session.add(
                    KbDocumentRow(
                        id=doc_id,
                        kb_id=kb.id,
                        source=source,
                        fingerprint=fingerprint,
                        status="partial" if chunks else "done",
                        chunks_total=len(chunks),
                        chunks_done=0,
                        pages=extracted.pages,
                        tags=list(tags),
                        doc_date=doc_date,
                        updated_at=utcnow(),
                    )
                )
                self._bump(session, kb.id)
                start = 0
            else:
                doc_id, start = known[0], known[3]
                state.chunks_resumed += start
        state.chunks_total += len(chunks)
        state.chunks_done += start
        for begin in range(start, len(chunks), batch_size):
            batch = chunks[begin : begin + batch_size]
            vectors = encoder.encode([c.text for c in batch], kind="passage").astype("<f4")
            tokens = [" ".join(lexical_tokens(" ".join([*c.heading_path, c.text]))) for c in batch]
            end = begin + len(batch)
            with self._db.session() as session:
                for offset, (chunk, vector, token_text) in enumerate(
                    zip(batch, vectors, tokens, strict=True)
                ):
                    ordinal = begin + offset
                    session.add(
                        KbChunkRow(
                            id=hashlib.sha1(f"{doc_id}/{ordinal}".encode()).hexdigest()[:32],
                            kb_id=kb.id,
                            document_id=doc_id,
                            ordinal=ordinal,
                            text=chunk.text,
                            page=chunk.page,
                            heading_path=list(chunk.heading_path),
                            kind=chunk.kind,
                            tokens=token_text,
                            vector=vector.tobytes(),
                        )
                    )
                session.execute(
                    update(KbDocumentRow)
                    .where(KbDocumentRow.id == doc_id)
                    .values(
                        chunks_done=end,
                        status="done" if end == len(chunks) else "partial",
                        updated_at=utcnow(),
                    )
                )
                self._bump(session, kb.id)
            state.chunks_done += len(batch)
            report()
        if not chunks or start >= len(chunks):
            with self._db.session() as session:
                session.execute(update(KbDocumentRow).where(KbDocumentRow.id == doc_id).values(status="done"))
        state.pages_done += extracted.pages

    @staticmethod
    def _bump(session: Session, kb_id: str) -> None:
        session.execute(
            update(KnowledgeBaseRow)
            .where(KnowledgeBaseRow.id == kb_id)
            .values(revision=KnowledgeBaseRow.revision + 1)
        )

    # --- retrieval -------------------------------------------------------------------------

    def snapshot(self, kb: KbPublic) -> Snapshot:
        """The KB's chunks and indexes at its current revision (rebuilt when it moved)."""
        with self._db.session(write=False) as session:
            revision = session.scalar(select(KnowledgeBaseRow.revision).where(KnowledgeBaseRow.id == kb.id))
        if revision is None:
            raise NotFound(f"knowledge base {kb.name!r} was deleted", code="kb_not_found")
        cached = self._snapshots.get(kb.id)
        if cached is not None and cached.revision == revision:
            return cached
        # One lock per KB: rebuilding a big KB's indexes does not hold up searches of the others.
        with self._snapshot_lock:
            lock = self._kb_locks.setdefault(kb.id, threading.Lock())
        with lock:
            cached = self._snapshots.get(kb.id)
            if cached is not None and cached.revision == revision:
                return cached
            snapshot = None
            if cached is not None and len(cached):
                snapshot = self._update(kb, cached, revision)
            if snapshot is None:
                snapshot = self._load(kb, revision)
            self._snapshots[kb.id] = snapshot
            return snapshot

    def _update(self, kb: KbPublic, cached: Snapshot, revision: int) -> Snapshot | None:
        """The snapshot at ``revision`` from ``cached`` and the chunks that changed since: only
        new chunks are read from the store, the vector index is updated (``VectorIndex.updated``)
        and so is BM25 (``LexicalIndex.updated``: kept chunks' term counts are copied). None when the index
        kind changes (``auto`` crossing the ANN threshold): then a full load."""
        with self._db.session(write=False) as session:
            current = (
                session.execute(
                    select(KbChunkRow.id)
                    .join(KbDocumentRow, KbDocumentRow.id == KbChunkRow.document_id)
                    .where(KbChunkRow.kb_id == kb.id)
                    .order_by(KbDocumentRow.source, KbChunkRow.ordinal)
                )
                .scalars()
                .all()
            )
            if not current or index_kind(kb.settings.index, len(current)) != cached.index.name:
                return None
            known = cached.position
            added = [i for i in current if i not in known]
            fresh: dict[str, tuple[ChunkMeta, str, bytes]] = {}
            for start in range(0, len(added), 500):
                rows = session.execute(
                    select(KbChunkRow, KbDocumentRow.source, KbDocumentRow.tags, KbDocumentRow.doc_date)
                    .join(KbDocumentRow, KbDocumentRow.id == KbChunkRow.document_id)
                    .where(KbChunkRow.id.in_(added[start : start + 500]))
                ).all()
                for c, source, tags, doc_date in rows:
                    fresh[c.id] = (_meta(c, source, tags, doc_date), c.tokens, c.vector)
        if len(fresh) != len(added):  # a chunk went between the two reads: start over
            return None
        removed = set(known) - set(current)
        chunks: list[ChunkMeta] = []
        order: list[int] = []  # each row's position in ``cached``, -1 for a new chunk
        tokens: list[list[str]] = []  # the new chunks' only: BM25 keeps the others' counts
        vectors = np.empty((len(current), cached.vectors.shape[1]), dtype=np.float32)
        for row, chunk_id in enumerate(current):
            position = known.get(chunk_id)
            if position is None:
                meta, token_text, vector = fresh[chunk_id]
                chunks.append(meta)
                order.append(-1)
                tokens.append(token_text.split())
                vectors[row] = np.frombuffer(vector, dtype="<f4")
            else:
                chunks.append(cached.chunks[position])
                order.append(position)
                vectors[row] = cached.vectors[position]
        added_vectors = (
            np.stack([np.frombuffer(fresh[i][2], dtype="<f4") for i in added])
            if added
            else np.zeros((0, vectors.shape[1]), dtype=np.float32)
        )
        index = cached.index.updated(removed, added, added_vectors)
        lexical = cached.lexical_index.updated(order, tokens)
        return Snapshot(
            revision=revision, chunks=chunks, vectors=vectors, index=index, built=True, lexical=lexical
        )

    def _load(self, kb: KbPublic, revision: int) -> Snapshot:
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(KbChunkRow, KbDocumentRow.source, KbDocumentRow.tags, KbDocumentRow.doc_date)
                .join(KbDocumentRow, KbDocumentRow.id == KbChunkRow.document_id)
                .where(KbChunkRow.kb_id == kb.id)
                .order_by(KbDocumentRow.source, KbChunkRow.ordinal)
            ).all()
        chunks = [_meta(c, source, tags, doc_date) for c, source, tags, doc_date in rows]
        if rows:
            vectors = np.frombuffer(b"".join(c.vector for c, *_ in rows), dtype="<f4").reshape(len(rows), -1)
        else:
            vectors = np.zeros((0, 1), dtype=np.float32)
        index = make_index(
            kb.settings.index,
            len(chunks),
            milvus_uri=kb.settings.milvus_uri,
            collection=f"kb_{kb.id}",
        )
        tokens = [c.tokens.split() for c, *_ in rows]
        return Snapshot(revision=revision, chunks=chunks, vectors=vectors, tokens=tokens, index=index)

    def search(self, kb: KbPublic, request: SearchRequest, *, encoder: Encoder | None) -> SearchResult:
        started = time.perf_counter()
        settings = kb.settings
        mode = request.mode or settings.retrieval
        snapshot = self.snapshot(kb)
        query_vector = None
        if mode != "bm25":
            if encoder is None:
                raise InvalidRequest(f"retrieval mode {mode!r} needs the KB's embedding model", param="mode")
            query_vector = encoder.encode([request.query], kind="query")[0]
            if len(snapshot) and query_vector.shape[0] != snapshot.vectors.shape[1]:
                raise InvalidRequest(
                    f"the encoder gives {query_vector.shape[0]}-d vectors, the KB holds "
                    f"{snapshot.vectors.shape[1]}-d ones: use its embedding model {settings.embedding_model}"
                )
        scored = snapshot.search(
            query_vector=query_vector,
            query_tokens=lexical_tokens(request.query),
            k=request.k,
            mode=mode,
            fusion=settings.fusion_spec(),
            mmr=settings.mmr if request.mmr is None else request.mmr,
            filters=request.filters,
        )
        hits = []
        for rank, item in enumerate(scored, start=1):
            chunk = snapshot.chunks[item.position]
            hits.append(
                ChunkHit(
                    rank=rank,
                    chunk_id=chunk.id,
                    source=chunk.source,
                    page=chunk.page,
                    heading_path=chunk.heading_path,
                    text=chunk.text,
                    score=round(item.score, 6),
                    dense_score=None if item.dense is None else round(item.dense, 6),
                    bm25_score=None if item.bm25 is None else round(item.bm25, 6),
                )
            )
        latency = (time.perf_counter() - started) * 1000
        return SearchResult(
            kb=kb.name, query=request.query, mode=mode, hits=hits, latency_ms=round(latency, 3)
        )
