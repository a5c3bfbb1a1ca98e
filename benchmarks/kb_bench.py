"""Knowledge bases: ingest speed, encoder quality, eval (hybrid vs dense vs BM25 on two sets) and
query latency at 10k chunks — each new encoder configuration next to the previous default.

1. Ingest a Chinese PDF + Markdown folder (the eval corpora's PDFs and Markdown, plus long
   Markdown documents cut from the bundled Chinese demo corpus so that chunks are full-size):
   pages/s, chunks/s and the encoder's share of the time for each encoder configuration, as a ratio
   to the *previous default* (``TorchE5Encoder`` as it was: bf16, 512-token window, no
   one-thread query path, no query cache) measured in the same run.
2. Quality of each configuration against the fp32 reference encoder: cosine of the chunk vectors
   and top-3 agreement of dense search over both question sets.
3. ``evaluate`` on ``tests/knowledge/corpus`` (75 easy questions) and ``tests/knowledge/corpus_hard``
   (62 questions in three categories: rare exact codes/numbers, paraphrases with little keyword
   overlap, near-duplicate distractor documents) in hybrid, dense and BM25 mode, per category.
4. A 10k-chunk KB (corpus chunk texts cycled with numbered variants, real jieba tokens, clustered
   random 384-d vectors) queried with real e5 query vectors: p50/p95 of the whole search and its
   parts (query embedding; BM25; dense; the rest: revision check, fusion, hits), query cache off,
   for the previous default and the new one.

Run: ``OMP_NUM_THREADS=1 python benchmarks/kb_bench.py --quick`` (a temp STRATUM_HOME; nothing is
kept). Without ``--quick``: more ingest text, more configurations (fp32, windows 256/192/128,
threads), three latency rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from stratum.engine.e5_torch import TorchE5Encoder
from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, load_encoder
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.evaluation import Question, evaluate, load_questions
from stratum.knowledge.schemas import KbCreate, KbPublic, KbSettings, SearchRequest
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.tables import KbChunkRow, KbDocumentRow, KnowledgeBaseRow
from stratum.knowledge.text import lexical_tokens, split_sentences, warm_up
from stratum.storage import Database, utcnow

ROOT = Path(__file__).resolve().parent.parent
SETS = {"easy": ROOT / "tests/knowledge/corpus", "hard": ROOT / "tests/knowledge/corpus_hard"}
DEMO_ZH = ROOT / "src/stratum/engine/demo_corpus/platform_zh.txt"


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


def previous_default() -> TorchE5Encoder:
    """The default encoder before this change: same compute, no one-thread small calls, no cache."""
    return TorchE5Encoder(small_call_tokens=0, query_cache=0)


def configurations(quick: bool) -> dict[str, object]:
    configs: dict[str, object] = {
        "previous default (bf16, 512)": previous_default,
        "new default (load_encoder)": lambda: load_encoder(BUILTIN_ENCODER_SOURCE),
        "bf16, window 256": lambda: TorchE5Encoder(passage_tokens=256),
        "bf16, window 128": lambda: TorchE5Encoder(passage_tokens=128),
        "student (6 layers)": lambda: TorchE5Encoder(student="e5-6l"),
        "student (4 layers)": lambda: TorchE5Encoder(student="e5-4l"),
    }
    if not quick:
        configs["fp32, 512"] = lambda: TorchE5Encoder(precision="fp32")
        configs["bf16, window 192"] = lambda: TorchE5Encoder(passage_tokens=192)
        configs["bf16, 1 thread"] = lambda: TorchE5Encoder(threads=1)
        configs["bf16, 2 threads"] = lambda: TorchE5Encoder(threads=2)
    return configs


def ingest_folder(target: Path, quick: bool) -> Path:
    """Chinese PDFs + Markdown: the eval corpora plus long documents from the demo corpus."""
    target.mkdir(parents=True)
    for name in ("x1_manual.pdf", "safety_rules.pdf"):
        shutil.copy(SETS["easy"] / name, target / name)
    markdown = sorted(SETS["easy"].glob("*.md")) + sorted(SETS["hard"].glob("*.md"))
    for path in markdown[:12] if quick else markdown:
        shutil.copy(path, target / f"{path.parent.name}_{path.name}")
    lines = DEMO_ZH.read_text(encoding="utf-8").splitlines()
    paragraphs = [line.split(": ", 1)[-1] for line in lines if line and not line.startswith("#")]
    for n in range(1 if quick else 4):
        # Each copy rotated so no two documents are identical (the KB skips nothing by content);
        # a heading every 6 paragraphs, so that chunks fill up to the KB's chunk size.
        body = paragraphs[n:] + paragraphs[:n]
        sections = [body[i : i + 6] for i in range(0, len(body), 6)]
        text = "\n\n".join(f"## 第{i + 1}节\n\n" + "".join(s) for i, s in enumerate(sections))
        (target / f"platform_{n}.md").write_text(f"# 平台手册（第{n + 1}册）\n\n{text}\n", encoding="utf-8")
    return target


def setup(home: Path) -> KnowledgeService:
    db = Database(f"sqlite:///{home / 'stratum.db'}")
    db.migrate()
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="bench"))
    tenancy.create_project("bench", ProjectCreate(name="kb"))
    return KnowledgeService(db)


def table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(flush=True)


def questions_by_category(path: Path) -> dict[str, list[Question]]:
    questions = load_questions(path)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups: dict[str, list[Question]] = {"all": questions}
    for q, r in zip(questions, raw, strict=True):
        if "category" in r:
            groups.setdefault(r["category"], []).append(q)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="less text, fewer configurations, one round")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=256,
        help="chunk size of the ingest KBs (the KB default is 256; 600 gives ~345-token Chinese chunks)",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    service = setup(home)
    warm_up()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}\n")
    folder = ingest_folder(home / "docs", args.quick)

    # 1. ingest, each configuration into its own KB, in alternating order over two rounds so that
    # a neighbour's burst of load lands on all of them about equally.
    configs = configurations(args.quick)
    encoders = {name: TimedEncoder(make()) for name, make in configs.items()}  # type: ignore[operator]
    for encoder in encoders.values():
        encoder.encode(["预热"], kind="query")
    totals = {name: [0.0, 0, 0, 0.0] for name in encoders}  # seconds, chunks, pages, encoder seconds
    names = list(encoders)
    for round_ in range(2):
        for name in names if round_ == 0 else names[::-1]:
            encoder = encoders[name]
            settings = KbSettings(chunk_size=args.chunk_size)
            kb = service.create(
                KbCreate(name=f"ingest-{names.index(name)}-{round_}", settings=settings), project="bench/kb"
            )
            encoder.seconds = 0.0
            result = service.ingest(kb, [folder], encoder=encoder)
            t = totals[name]
            t[0] += result.elapsed_s
            t[1] += result.chunks_done
            t[2] += result.pages_done
            t[3] += encoder.seconds
    base = totals[names[0]][1] / totals[names[0]][0]
    print(
        f"Ingest of {len(list(folder.iterdir()))} files (Chinese PDF + Markdown), chunk size "
        f"{args.chunk_size}, 2 rounds each:\n"
    )
    table(
        ["encoder", "chunks", "pages", "seconds", "chunks/s", "pages/s", "vs previous", "encoder share"],
        [
            [
                name,
                int(c),
                int(p),
                f"{s:.1f}",
                f"{c / s:.2f}",
                f"{p / s:.2f}",
                f"{c / s / base:.2f}x",
                f"{e / s:.0%}",
            ]
            for name, (s, c, p, e) in totals.items()
        ],
    )

    tail_retrieval(service, encoders)

    # 2 + 3. eval KBs per configuration; quality vs the fp32 reference.
    reference = TorchE5Encoder(precision="fp32", query_cache=0)
    eval_kbs: dict[tuple[str, str], KbPublic] = {}
    for name, encoder in [("fp32 reference", TimedEncoder(reference)), *encoders.items()]:
        for set_name, root in SETS.items():
            kb = service.create(KbCreate(name=f"eval-{len(eval_kbs)}"), project="bench/kb")
            service.ingest(kb, [root], encoder=encoder)
            eval_kbs[(name, set_name)] = service.get(project="bench/kb", name=kb.name)
    groups = {set_name: questions_by_category(root / "questions.jsonl") for set_name, root in SETS.items()}
    quality = []
    for name, encoder in encoders.items():
        cosines, agree, total = [], 0, 0
        for set_name in SETS:
            ours = service.snapshot(eval_kbs[(name, set_name)])
            ref = service.snapshot(eval_kbs[("fp32 reference", set_name)])
            assert [c.text for c in ours.chunks] == [c.text for c in ref.chunks]
            cosines.extend((ours.vectors * ref.vectors).sum(axis=1).tolist())
            for q in groups[set_name]["all"]:
                request = SearchRequest(query=q.question, k=3, mode="dense")
                mine = service.search(eval_kbs[(name, set_name)], request, encoder=encoder).hits
                theirs = service.search(
                    eval_kbs[("fp32 reference", set_name)], request, encoder=reference
                ).hits
                # Chunk ids differ between KBs (random document ids): compare source and text.
                agree += [(h.source, h.text) for h in mine] == [(h.source, h.text) for h in theirs]
                total += 1
        quality.append([name, f"{min(cosines):.4f}", f"{statistics.mean(cosines):.5f}", f"{agree}/{total}"])
    print("Chunk vectors vs the fp32 reference encoder, and identical dense top-3 over both question sets:\n")
    table(["encoder", "cosine min", "cosine mean", "same top-3"], quality)

    rows = []
    for name in encoders:
        encoder = encoders[name]
        for set_name in SETS:
            kb = eval_kbs[(name, set_name)]
            for mode in ("hybrid", "dense", "bm25"):

                def search(request, kb=kb, mode=mode, encoder=encoder):  # type: ignore[no-untyped-def]
                    return service.search(kb, request.model_copy(update={"mode": mode}), encoder=encoder)

                for category, qs in groups[set_name].items():
                    report = evaluate(category, qs, search, k=3)
                    scores = [f"{report.hit_at_k:.3f}", f"{report.mrr:.3f}", f"{report.answer_recall:.3f}"]
                    rows.append([name, set_name, category, mode, len(qs), *scores])
    print("Retrieval quality, k=3 (hit@3 = expected document in the top 3):\n")
    table(["encoder", "set", "category", "mode", "questions", "hit@3", "MRR", "answer recall"], rows)

    latency(service, SETS["easy"], groups["easy"]["all"] + groups["hard"]["all"], args.quick)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


def tail_retrieval(service: KnowledgeService, encoders: dict[str, TimedEncoder]) -> None:
    """What a shorter window loses: a sentence from the *end* of each long chunk as the query.

    The question sets' chunks are short (under 140 tokens), so a window cannot hurt them; here
    every chunk longer than the smallest window (128 tokens) in the ingest KBs is looked for by its
    last sentence (dense, top-1 and top-3 among all chunks of that KB).
    """
    rows = []
    counter = previous_default()
    for position, (name, encoder) in enumerate(encoders.items()):
        snapshot = service.snapshot(service.get(project="bench/kb", name=f"ingest-{position}-0"))
        long = [i for i, c in enumerate(snapshot.chunks) if counter.count_tokens([c.text])[0] > 128]
        top1 = top3 = 0
        for i in long:
            sentences = [s for s in split_sentences(snapshot.chunks[i].text) if len(s) >= 12]
            if not sentences:
                continue
            query = encoder.encode([sentences[-1]], kind="query")[0]
            order = np.argsort(-(snapshot.vectors @ query))[:3].tolist()
            top1 += order[0] == i
            top3 += i in order
        rows.append([name, len(long), f"{top1 / max(len(long), 1):.3f}", f"{top3 / max(len(long), 1):.3f}"])
    print("Chunks over 128 tokens found by their last sentence, dense search over the ingest KB:\n")
    table(["encoder", "long chunks", "top-1", "top-3"], rows)


def latency(service: KnowledgeService, corpus: Path, questions: list[Question], quick: bool) -> None:
    """10k chunks: p50/p95 of the whole search and its parts, previous vs new default encoder."""
    db = service._db
    kb = service.create(KbCreate(name="ten-k"), project="bench/kb")
    texts = [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*.md"))]
    texts = [t[i : i + 300] for t in texts for i in range(0, len(t), 300)]
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, 384)) + 2.0
    with db.session() as session:
        doc_ids = [uuid.uuid4().hex for _ in range(100)]
        for d, doc_id in enumerate(doc_ids):
            session.add(
                KbDocumentRow(id=doc_id, kb_id=kb.id, source=f"doc{d:03d}.md", fingerprint="x", status="done",
                              chunks_total=100, chunks_done=100, pages=1, tags=[], updated_at=utcnow())
            )  # fmt: skip
        session.flush()
        for i in range(10_000):
            text = f"{texts[i % len(texts)]}（第{i}版）"
            vector = centres[i % 64] + rng.standard_normal(384)
            vector = (vector / np.linalg.norm(vector)).astype("<f4")
            session.add(
                KbChunkRow(id=uuid.uuid4().hex, kb_id=kb.id, document_id=doc_ids[i // 100], ordinal=i % 100,
                           text=text, page=None, heading_path=[], kind="text",
                           tokens=" ".join(lexical_tokens(text)), vector=vector.tobytes())
            )  # fmt: skip
        session.get(KnowledgeBaseRow, kb.id).revision = 1  # type: ignore[union-attr]
    kb = service.get(project="bench/kb", name="ten-k")
    started = time.perf_counter()
    snapshot = service.snapshot(kb)
    print(f"10k-chunk KB: indexes built in {time.perf_counter() - started:.2f} s\n")
    candidates = {
        "previous default": TimedEncoder(previous_default()),
        "new default, query cache off": TimedEncoder(TorchE5Encoder(query_cache=0)),
    }
    parts: dict[str, dict[str, list[float]]] = {
        name: {"whole search": [], "query embedding": [], "BM25": [], "dense": [], "rest": []}
        for name in candidates
    }
    for encoder in candidates.values():
        encoder.encode(["预热"], kind="query")
    for round_ in range(1 if quick else 3):
        for q in questions:
            for name, encoder in candidates.items() if round_ % 2 == 0 else reversed(candidates.items()):
                encoder.seconds = 0.0
                t = time.perf_counter()
                service.search(kb, SearchRequest(query=q.question, k=5), encoder=encoder)
                total = (time.perf_counter() - t) * 1000
                vector = encoder.inner.encode([q.question], kind="query")[0]
                tokens = lexical_tokens(q.question)
                t = time.perf_counter()
                snapshot.lexical(tokens, 50, None)
                bm25 = (time.perf_counter() - t) * 1000
                t = time.perf_counter()
                snapshot.dense(vector, 50, None)
                dense = (time.perf_counter() - t) * 1000
                p = parts[name]
                p["whole search"].append(total)
                p["query embedding"].append(encoder.seconds * 1000)
                p["BM25"].append(bm25)
                p["dense"].append(dense)
                p["rest"].append(max(total - encoder.seconds * 1000 - bm25 - dense, 0.0))
    rows = []
    for name, p in parts.items():
        for part, values in p.items():
            rows.append([name, part, f"{statistics.median(values):.1f}", f"{np.percentile(values, 95):.1f}"])
    count = len(parts["previous default"]["whole search"])
    print(f"10k chunks, hybrid, k=5, {count} queries per encoder (ms):\n")
    table(["encoder", "part", "p50", "p95"], rows)


if __name__ == "__main__":
    main()
