"""Incremental KB index updates vs a full rebuild, after one changed file.

A KB of N chunks (384-d random unit vectors, Chinese-like tokens) is written straight into a
SQLite store, its snapshot (vector index + BM25) built, then one document of 20 chunks is replaced
the way ``ingest`` replaces a changed file. Timed: the next ``snapshot()`` of the service that had
the old one cached (incremental: reads the 20 new rows, updates the index) against a fresh
service's ``snapshot()`` (the baseline: reads every row, builds everything), per index kind.
Recall@10 of the updated and of the rebuilt index is reported against exact search (random
vectors are HNSW's worst case: compare the two columns, not the absolute value).

Run: ``OMP_NUM_THREADS=1 python benchmarks/kb_update_bench.py [--quick] [--sizes 20000,100000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import delete, update

from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.schemas import KbCreate, KbPublic, KbSettings
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow, KnowledgeBaseRow
from stratum.storage import Database, utcnow

DIM = 384
PER_DOC = 20
VOCAB = [f"{a}{b}" for a in "天地人和春夏秋冬山水风云花草书茶" for b in "文武明清安乐高远新古长短"]


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _add_document(db: Database, kb: KbPublic, source: str, rng: np.random.Generator) -> str:
    doc_id = uuid.uuid4().hex
    vectors = _vectors(rng, PER_DOC)
    with db.session() as session:
        session.add(
            KbDocumentRow(
                id=doc_id,
                kb_id=kb.id,
                source=source,
                fingerprint=hashlib.sha256(doc_id.encode()).hexdigest(),
                status="done",
                chunks_total=PER_DOC,
                chunks_done=PER_DOC,
                pages=0,
                tags=[],
                updated_at=utcnow(),
            )
        )
        session.flush()
        for ordinal in range(PER_DOC):
            words = rng.choice(VOCAB, 40)
            session.add(
                KbChunkRow(
                    id=hashlib.sha1(f"{doc_id}/{ordinal}".encode()).hexdigest()[:32],
                    kb_id=kb.id,
                    document_id=doc_id,
                    ordinal=ordinal,
                    text="".join(words),
                    page=None,
                    heading_path=[],
                    kind="text",
                    tokens=" ".join(words),
                    vector=vectors[ordinal].tobytes(),
                )
            )
        session.execute(
            update(KnowledgeBaseRow)
            .where(KnowledgeBaseRow.id == kb.id)
            .values(revision=KnowledgeBaseRow.revision + 1)
        )
    return doc_id


def run(size: int, index: str, folder: Path) -> dict[str, object]:
    rng = np.random.default_rng(11)
    db = Database(f"sqlite:///{folder / f'{index}-{size}.db'}")
    db.migrate()
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="bench"))
    tenancy.create_project("bench", ProjectCreate(name="kb"))
    service = KnowledgeService(db)
    extra = {"milvus_uri": str(folder / f"milvus-{size}.db")} if index == "milvus" else {}
    kb = service.create(
        KbCreate(name=f"kb-{index}", settings=KbSettings(index=index, **extra)),  # type: ignore[arg-type]
        project="bench/kb",
    )
    docs = [_add_document(db, kb, f"doc{i:06d}.md", rng) for i in range(size // PER_DOC)]
    started = time.perf_counter()
    service.snapshot(kb)
    first = time.perf_counter() - started
    # One changed file: its old chunks go, new ones come (as ``ingest`` does in one transaction).
    with db.session() as session:
        session.execute(delete(KbChunkRow).where(KbChunkRow.document_id == docs[7]))
        session.execute(delete(KbDocumentRow).where(KbDocumentRow.id == docs[7]))
    _add_document(db, kb, "doc000007.md", rng)
    started = time.perf_counter()
    updated = service.snapshot(kb)
    incremental = time.perf_counter() - started
    started = time.perf_counter()
    fresh = KnowledgeService(db).snapshot(kb)
    full = time.perf_counter() - started
    queries = _vectors(rng, 50)
    recall, recall_fresh = [], []
    for q in queries:
        exact = {fresh.chunks[i].id for i in np.argsort(-(fresh.vectors @ q))[:10]}
        recall.append(len(exact & {i for i, _ in updated.index.search(q, 10)}) / 10)
        recall_fresh.append(len(exact & {i for i, _ in fresh.index.search(q, 10)}) / 10)
    db.dispose()
    return {
        "index": index,
        "chunks": size,
        "first build s": round(first, 2),
        "full rebuild s": round(full, 3),
        "incremental s": round(incremental, 3),
        "speed-up": f"{full / incremental:.1f}x",
        "recall@10 updated": round(float(np.mean(recall)), 3),
        "recall@10 rebuilt": round(float(np.mean(recall_fresh)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k chunks, exact and hnsw only")
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--indexes", default="exact,hnsw", help="also: milvus")
    args = parser.parse_args()
    sizes = [2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    indexes = ["exact", "hnsw"] if args.quick else args.indexes.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            for index in indexes:
                try:
                    rows.append(run(size, index, Path(scratch)))
                except Exception as exc:  # e.g. milvus-lite failing to start: report, go on
                    print(f"{index} at {size}: {type(exc).__name__}: {exc}")
    keys = list(next(r for r in rows if "error" not in r))
    print(" | ".join(keys))
    print(" | ".join("---" for _ in keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
