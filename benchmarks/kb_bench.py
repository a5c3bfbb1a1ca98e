"""Knowledge bases: ingest throughput, eval (hybrid vs dense vs BM25, two chunk sizes), and query
latency at 10k chunks.

1. Ingest ``tests/knowledge/corpus`` (Chinese Markdown/TXT/CSV + two PDFs) with the encoder the
   gateway uses (the bundled multilingual-e5-small through ``load_encoder``), at chunk sizes 256 and
   128: chunks/s and pages/s, and the encoder's share of the time.
2. ``evaluate`` the 63 questions of ``questions.jsonl`` on both KBs in three retrieval modes.
3. A 10k-chunk KB: the corpus' chunk texts cycled with numbered variants (real jieba tokens) and
   clustered random 384-d vectors standing in for e5 passages (embedding 10k chunks takes longer
   than this benchmark may), queried with real e5 query vectors: p50/p95 of the whole search and of
   its parts (query embedding, retrieval), with exact search as the index.

Run: ``OMP_NUM_THREADS=1 python benchmarks/kb_bench.py`` (a temp STRATUM_HOME; nothing is kept).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, load_encoder
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.evaluation import evaluate, load_questions
from stratum.knowledge.schemas import KbCreate, KbSettings, SearchRequest
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow, KnowledgeBaseRow
from stratum.knowledge.text import lexical_tokens, warm_up
from stratum.storage import Database, utcnow

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "knowledge" / "corpus"


class TimedEncoder:
    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner, self.dimensions, self.info, self.seconds = inner, inner.dimensions, inner.info, 0.0

    def encode(self, texts, *, kind="passage"):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return self.inner.encode(texts, kind=kind)
        finally:
            self.seconds += time.perf_counter() - started

    def count_tokens(self, texts, *, kind="passage"):  # type: ignore[no-untyped-def]
        return self.inner.count_tokens(texts, kind=kind)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    db = Database(f"sqlite:///{home / 'stratum.db'}")
    db.migrate()
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="bench"))
    tenancy.create_project("bench", ProjectCreate(name="kb"))
    service = KnowledgeService(db)
    encoder = TimedEncoder(load_encoder(BUILTIN_ENCODER_SOURCE))
    warm_up()
    encoder.encode(["warm up"], kind="query")
    print(f"encoder: {encoder.info.extra.get('engine')} ({type(encoder.inner).__name__})")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}\n")
    print("| chunk size | files | pages | chunks | seconds | chunks/s | pages/s | encoder share |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    kbs = []
    for size in (256, 128):
        kb = service.create(
            KbCreate(name=f"c{size}", settings=KbSettings(chunk_size=size, chunk_overlap=size // 8)),
            project="bench/kb",
        )
        encoder.seconds = 0.0
        result = service.ingest(kb, [CORPUS], encoder=encoder)
        seconds = result.elapsed_s
        print(
            f"| {size} | {result.files_total} | {result.pages_done} | {result.chunks_done} | {seconds:.1f} | "
            f"{result.chunks_done / seconds:.2f} | {result.pages_done / seconds:.2f} | "
            f"{encoder.seconds / seconds:.0%} |",
            flush=True,
        )
        kbs.append(service.get(project="bench/kb", name=kb.name))

    questions = load_questions(CORPUS / "questions.jsonl")
    print(f"\n{len(questions)} questions, k=3\n")
    rows = []
    for kb in kbs:
        service.snapshot(kb)
        for mode in ("hybrid", "dense", "bm25"):

            def search(request, kb=kb, mode=mode):  # type: ignore[no-untyped-def]
                return service.search(kb, request.model_copy(update={"mode": mode}), encoder=encoder)

            rows.append(evaluate(f"chunk {kb.settings.chunk_size} {mode}", questions, search, k=3).row())
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")

    # Refusal threshold: the best cosine of in-corpus questions vs questions the corpus cannot answer.
    outside = [
        "火星探测器的推进剂是什么型号？",
        "明天上海的天气怎么样？",
        "如何用 Rust 写一个 HTTP 服务器？",
        "Who won the 1998 football world cup?",
        "量子纠缠的基本原理是什么？",
    ]

    def best(query: str) -> float:
        hits = service.search(kbs[0], SearchRequest(query=query, k=1, mode="dense"), encoder=encoder).hits
        return hits[0].dense_score or 0.0

    inside_scores = [best(q.question) for q in questions]
    outside_scores = [best(q) for q in outside]
    print(
        f"\nbest dense cosine, answerable questions: min {min(inside_scores):.3f} "
        f"p10 {pct(inside_scores, 10):.3f} median {statistics.median(inside_scores):.3f}"
    )
    print("best dense cosine, unanswerable questions: " + ", ".join(f"{s:.3f}" for s in outside_scores))

    # 10k chunks: texts cycled from the corpus, clustered vectors, real query embeddings.
    snapshot = service.snapshot(kbs[0])
    texts = [c.text for c in snapshot.chunks]
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, 384)) + 2.0
    kb = service.create(KbCreate(name="ten-k"), project="bench/kb")
    started = time.perf_counter()
    with db.session() as session:
        doc_ids = []
        for d in range(100):
            doc_ids.append(uuid.uuid4().hex)
            session.add(
                KbDocumentRow(
                    id=doc_ids[-1],
                    kb_id=kb.id,
                    source=f"doc{d:03d}.md",
                    fingerprint="x",
                    status="done",
                    chunks_total=100,
                    chunks_done=100,
                    pages=1,
                    tags=[],
                    updated_at=utcnow(),
                )
            )
        session.flush()
        for i in range(10_000):
            text = f"{texts[i % len(texts)]}（第{i}版）"
            vector = centres[i % 64] + rng.standard_normal(384)
            vector = (vector / np.linalg.norm(vector)).astype("<f4")
            session.add(
                KbChunkRow(
                    id=uuid.uuid4().hex,
                    kb_id=kb.id,
                    document_id=doc_ids[i // 100],
                    ordinal=i % 100,
                    text=text,
                    page=None,
                    heading_path=[],
                    kind="text",
                    tokens=" ".join(lexical_tokens(text)),
                    vector=vector.tobytes(),
                )
            )
        session.get(KnowledgeBaseRow, kb.id).revision = 1  # type: ignore[union-attr]
    kb = service.get(project="bench/kb", name="ten-k")
    built = time.perf_counter()
    service.snapshot(kb)
    load_s = time.perf_counter() - built
    print(f"\n10k-chunk KB: written in {built - started:.1f} s, indexes loaded/built in {load_s:.2f} s")
    totals, encodes, retrievals = [], [], []
    for _ in range(3):
        for q in questions:
            encoder.seconds = 0.0
            t = time.perf_counter()
            service.search(kb, SearchRequest(query=q.question, k=5), encoder=encoder)
            total = (time.perf_counter() - t) * 1000
            totals.append(total)
            encodes.append(encoder.seconds * 1000)
            retrievals.append(total - encoder.seconds * 1000)
    print("| part (ms, 10k chunks, hybrid, k=5) | p50 | p95 |")
    print("|---|--:|--:|")
    for name, values in (
        ("whole search", totals),
        ("query embedding (e5)", encodes),
        ("retrieval (BM25+dense+RRF)", retrievals),
    ):
        print(f"| {name} | {statistics.median(values):.1f} | {pct(values, 95):.1f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    db.dispose()


if __name__ == "__main__":
    main()
