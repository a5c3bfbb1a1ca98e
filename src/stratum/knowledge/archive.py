"""Export and import of a whole KB as one ``.zip`` archive, so it moves between installations.

Layout (format 1)::

    manifest.json     format, stratum version, KB name, settings, counts, vector dimensions
    documents.jsonl   one document per line (source, fingerprint, pages, tags, date)
    chunks.jsonl      one chunk per line (id, document source, ordinal, text, page, heading path,
                      kind, lexical tokens), in the order of vectors.npy
    vectors.npy       float32 matrix, one row per chunk

Only finished documents are exported (a ``partial`` one would be resumed on the source system,
not here). Import writes everything in one transaction: a failed import leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select

from stratum import __version__
from stratum.errors import InvalidRequest
from stratum.knowledge.schemas import KbCreate, KbPublic, KbSettings
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow, KnowledgeBaseRow
from stratum.storage import Database

FORMAT = 1


def export_kb(db: Database, kb: KbPublic, target: Path) -> dict[str, object]:
    with db.session(write=False) as session:
        documents = session.scalars(
            select(KbDocumentRow)
            .where(KbDocumentRow.kb_id == kb.id, KbDocumentRow.status == "done")
            .order_by(KbDocumentRow.source)
        ).all()
        by_id = {d.id: d for d in documents}
        chunks = [
            c
            for c in session.scalars(
                select(KbChunkRow)
                .where(KbChunkRow.kb_id == kb.id)
                .order_by(KbChunkRow.document_id, KbChunkRow.ordinal)
            ).all()
            if c.document_id in by_id
        ]
    vectors = (
        np.frombuffer(b"".join(c.vector for c in chunks), dtype="<f4").reshape(len(chunks), -1)
        if chunks
        else np.zeros((0, 0), dtype="<f4")
    )
    manifest = {
        "format": FORMAT,
        "stratum": __version__,
        "name": kb.name,
        "description": kb.description,
        "settings": kb.settings.model_dump(mode="json"),
        "documents": len(documents),
        "chunks": len(chunks),
        "dimensions": int(vectors.shape[1]) if chunks else 0,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
        archive.writestr(
            "documents.jsonl",
            "".join(
                json.dumps(
                    {
                        "source": d.source,
                        "fingerprint": d.fingerprint,
                        "pages": d.pages,
                        "tags": list(d.tags or []),
                        "doc_date": d.doc_date.isoformat() if d.doc_date else None,
                        "chunks": d.chunks_total,
                    },
                    ensure_ascii=False,
                )
                + "\n"
                for d in documents
            ),
        )
        archive.writestr(
            "chunks.jsonl",
            "".join(
                json.dumps(
                    {
                        "id": c.id,
                        "source": by_id[c.document_id].source,
                        "ordinal": c.ordinal,
                        "text": c.text,
                        "page": c.page,
                        "heading_path": list(c.heading_path or []),
                        "kind": c.kind,
                        "tokens": c.tokens,
                    },
                    ensure_ascii=False,
                )
                + "\n"
                for c in chunks
            ),
        )
        archive.writestr("vectors.npy", buffer.getvalue())
    return manifest


def import_kb(
    db: Database, service: KnowledgeService, source: Path, *, project: str, name: str | None = None
) -> KbPublic:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidRequest(f"{source} is not a knowledge-base archive: {exc}", param="archive") from exc
    with archive:
        try:
            manifest = json.loads(archive.read("manifest.json"))
            documents = [
                json.loads(line) for line in archive.read("documents.jsonl").decode().splitlines() if line
            ]
            chunks = [json.loads(line) for line in archive.read("chunks.jsonl").decode().splitlines() if line]
            vectors = np.load(io.BytesIO(archive.read("vectors.npy")), allow_pickle=False)
        except (KeyError, ValueError) as exc:
            raise InvalidRequest(f"{source.name} is not a valid knowledge-base archive: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise InvalidRequest(
            f"unsupported archive format {manifest.get('format')!r} (this Stratum reads {FORMAT})"
        )
    if len(chunks) != len(vectors):
        raise InvalidRequest(f"archive holds {len(chunks)} chunks but {len(vectors)} vectors")
    spec = KbCreate(
        name=name or manifest["name"],
        description=manifest.get("description"),
        settings=KbSettings(**manifest["settings"]),
    )
    kb = service.create(spec, project=project)
    try:
        with db.session() as session:
            doc_ids = {}
            for d in documents:
                doc_ids[d["source"]] = uuid.uuid4().hex
                session.add(
                    KbDocumentRow(
                        id=doc_ids[d["source"]],
                        kb_id=kb.id,
                        source=d["source"],
                        fingerprint=d["fingerprint"],
                        status="done",
                        chunks_total=d["chunks"],
                        chunks_done=d["chunks"],
                        pages=d["pages"],
                        tags=d["tags"],
                        doc_date=datetime.fromisoformat(d["doc_date"]) if d.get("doc_date") else None,
                    )
                )
            session.flush()
            for chunk, vector in zip(chunks, vectors, strict=True):
                session.add(
                    KbChunkRow(
                        # Chunk ids are global keys: a KB imported twice (or next to its original)
                        # gets fresh ones.
                        id=uuid.uuid4().hex,
                        kb_id=kb.id,
                        document_id=doc_ids[chunk["source"]],
                        ordinal=chunk["ordinal"],
                        text=chunk["text"],
                        page=chunk["page"],
                        heading_path=chunk["heading_path"],
                        kind=chunk["kind"],
                        tokens=chunk["tokens"],
                        vector=np.asarray(vector, dtype="<f4").tobytes(),
                    )
                )
            row = session.get(KnowledgeBaseRow, kb.id)
            assert row is not None
            row.revision += 1
    except BaseException:
        service.delete(kb)
        raise
    return service.get(project=kb.project, name=kb.name)
