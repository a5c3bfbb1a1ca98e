"""Hybrid fusion variants on both eval sets, chosen on a tuning split and reported on a held-out one.

Both sets (``tests/knowledge/corpus``: 75 easy questions; ``tests/knowledge/corpus_hard``: 62 in
three categories) are ingested with the bundled e5 encoder. For every question the dense list and
the BM25 list are computed once, exactly as ``Snapshot.search`` computes them (depth 50); every
variant then runs ``knowledge.retrieval.fuse`` — the code hybrid search uses — on those lists.

Split (fixed, no randomness): within each category of each set (the easy set is one category),
questions at even positions (0, 2, 4 …, in file order) are the *tuning* split, odd positions the
*held-out* split. The variant with the best tuning score (mean of hit@3 and MRR over the tuning
questions of both sets; ties: listed first) is the tuning pick, and the best non-gated variant is
printed too (the KB default: gated fusion's margin is in the encoder's cosine units, so it only
holds for e5; the other variants are scale-free). ``--hash-encoder`` repeats everything with the
unit tests' semantics-poor hash encoder, to see what fusion does when the dense side is weak.
Held-out numbers of the pick, the ``KbSettings`` default, the old plain RRF, dense-only and
BM25-only are reported on the same questions.

Run: ``OMP_NUM_THREADS=1 python benchmarks/fusion_bench.py --quick`` (``--quick``: fewer variants).
``--cache FILE`` keeps the per-question lists (JSON) so that a re-run skips ingest and encoding.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from stratum.knowledge.evaluation import load_questions
from stratum.knowledge.retrieval import MIN_DEPTH, Fusion, fuse
from stratum.knowledge.schemas import KbCreate, KbSettings, SearchFilters
from stratum.knowledge.text import lexical_tokens

ROOT = Path(__file__).resolve().parent.parent
SETS = {"easy": ROOT / "tests/knowledge/corpus", "hard": ROOT / "tests/knowledge/corpus_hard"}
K = 3


def collect(hash_encoder: bool = False, source: str | None = None) -> list[dict[str, object]]:
    """One record per question: set, category, split, expected source, both ranked lists (sources)."""
    from benchmarks.kb_bench import setup

    from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, load_encoder

    if hash_encoder:
        from tests.knowledge.conftest import HashEncoder

        encoder: Any = HashEncoder()
    else:
        encoder = load_encoder(source or BUILTIN_ENCODER_SOURCE)
    records: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as home:
        service = setup(Path(home))
        for set_name, folder in SETS.items():
            kb = service.create(KbCreate(name=f"fusion-{set_name}"), project="bench/kb")
            service.ingest(kb, [folder], encoder=encoder)
            kb = service.get(project="bench/kb", name=kb.name)
            snapshot = service.snapshot(kb)
            raw = [json.loads(x) for x in (folder / "questions.jsonl").read_text("utf-8").splitlines() if x]
            seen: dict[str, int] = {}
            for q, r in zip(load_questions(folder / "questions.jsonl"), raw, strict=True):
                category = r.get("category", "all")
                index = seen[category] = seen.get(category, -1) + 1
                vector = encoder.encode([q.question], kind="query")[0]
                mask = snapshot.allowed(SearchFilters())
                dense = snapshot.dense(vector, MIN_DEPTH, mask)
                lexical = snapshot.lexical(lexical_tokens(q.question), MIN_DEPTH, mask)
                records.append(
                    {
                        "set": set_name,
                        "category": category,
                        "split": "tune" if index % 2 == 0 else "held-out",
                        "expected": q.expected_source,
                        "sources": [c.source for c in snapshot.chunks],
                        "dense": [[p, float(s)] for p, s in dense],
                        "lexical": [[p, float(s)] for p, s in lexical],
                    }
                )
    return records


def ranked_sources(record: dict[str, object], variant: str | Fusion) -> list[str]:
    sources: list[str] = record["sources"]  # type: ignore[assignment]
    dense = [(int(p), s) for p, s in record["dense"]]  # type: ignore[attr-defined]
    lexical = [(int(p), s) for p, s in record["lexical"]]  # type: ignore[attr-defined]
    if variant == "dense":
        order = [p for p, _ in dense]
    elif variant == "bm25":
        order = [p for p, _ in lexical]
    else:
        assert isinstance(variant, Fusion)
        fused = sorted(fuse(dense, lexical, variant), key=lambda s: (-s.score, s.position))
        order = [s.position for s in fused]
    return [sources[p] for p in order[:K]]


def score(records: list[dict[str, object]], variant: str | Fusion) -> tuple[float, float]:
    hits = rr = 0.0
    for r in records:
        top = ranked_sources(r, variant)
        if r["expected"] in top:
            hits += 1
            rr += 1 / (top.index(r["expected"]) + 1)  # type: ignore[arg-type]
    n = len(records) or 1
    return hits / n, rr / n


def variants(quick: bool) -> dict[str, Fusion]:
    out: dict[str, Fusion] = {"rrf k=60 (old default)": Fusion(method="rrf", rrf_k=60, dense_weight=0.5)}
    for k in (10, 60) if quick else (5, 10, 20, 60, 100):
        for w in (0.6, 0.7, 0.8) if quick else (0.6, 0.65, 0.7, 0.75, 0.8, 0.9):
            out[f"rrf k={k} w_dense={w}"] = Fusion(rrf_k=k, dense_weight=w)
    for w in (0.5, 0.7, 0.8) if quick else (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9):
        out[f"relative w_dense={w}"] = Fusion(method="relative", dense_weight=w)
    for m in (0.01, 0.02, 0.03) if quick else (0.005, 0.01, 0.015, 0.02, 0.03, 0.05):
        for ratio in (1.5, 100.0) if quick else (1.2, 1.5, 2.0, 100.0):
            out[f"gated margin={m} lexical_ratio={ratio}"] = Fusion(
                method="gated", margin=m, lexical_ratio=ratio
            )
    return out


def table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants")
    parser.add_argument("--hash-encoder", action="store_true", help="the tests' hash encoder instead of e5")
    parser.add_argument(
        "--encoder", help="embedding source (default builtin:e5; e.g. builtin:e5-6l, builtin:e5-4l)"
    )
    parser.add_argument("--cache", type=Path, help="JSON file with the per-question lists (made if absent)")
    args = parser.parse_args()
    if args.cache and args.cache.is_file():
        records = json.loads(args.cache.read_text("utf-8"))
    else:
        records = collect(args.hash_encoder, args.encoder)
        if args.cache:
            args.cache.write_text(json.dumps(records, ensure_ascii=False), "utf-8")
    tune = [r for r in records if r["split"] == "tune"]
    held = [r for r in records if r["split"] == "held-out"]
    print(
        f"{len(records)} questions: tuning split {len(tune)}, held-out {len(held)} (even/odd per category)\n"
    )

    candidates = variants(args.quick)
    rows, best_name, best = [], "", -1.0
    for name, fusion in candidates.items():
        hit, mrr = score(tune, fusion)
        worst = min(
            score([r for r in tune if r["set"] == s and r["category"] == c], fusion)[0]
            - score([r for r in tune if r["set"] == s and r["category"] == c], "dense")[0]
            for s, c in {(r["set"], r["category"]) for r in tune}
        )
        rows.append([name, f"{hit:.3f}", f"{mrr:.3f}", f"{worst:+.3f}"])
        if (hit + mrr) / 2 > best + 1e-9:
            best_name, best = name, (hit + mrr) / 2
    for mode in ("dense", "bm25"):
        hit, mrr = score(tune, mode)
        rows.append([f"{mode} only", f"{hit:.3f}", f"{mrr:.3f}", ""])
    print("Tuning split, both sets (worst Δhit@3 vs dense over the set/category cells):\n")
    table(["variant", "hit@3", "MRR", "worst Δ vs dense"], rows)
    robust = max(
        (n for n, f in candidates.items() if f.method != "gated"),
        key=lambda n: sum(score(tune, candidates[n])),
    )
    print(f"best non-gated variant on the tuning split (gated's margin is in e5 cosine units): {robust}")
    tied = [r[0] for r in rows[: len(candidates)] if abs((float(r[1]) + float(r[2])) / 2 - best) < 1e-3]
    print(f"pick (best mean of hit@3 and MRR on the tuning split, first listed): {best_name}")
    print(f"tied with it on the tuning split: {', '.join(tied)}\n")

    chosen = {
        "hybrid (tuning pick)": candidates[best_name],
        "hybrid (KbSettings default)": KbSettings().fusion_spec(),
        "hybrid (old rrf k=60)": Fusion(method="rrf", rrf_k=60, dense_weight=0.5),
        "dense": "dense",
        "bm25": "bm25",
    }
    cells = [
        *sorted({(r["set"], r["category"]) for r in records}),
        ("easy", "*"),
        ("hard", "*"),
        ("both", "*"),
    ]
    for split_name, split in (("held-out", held), ("tune", tune), ("all", records)):
        rows = []
        for s, c in cells:
            subset = [r for r in split if (s == "both" or r["set"] == s) and (c == "*" or r["category"] == c)]
            row: list[object] = [s, c, len(subset)]
            for variant in chosen.values():
                hit, mrr = score(subset, variant)  # type: ignore[arg-type]
                row.append(f"{hit:.3f} / {mrr:.3f}")
            rows.append(row)
        print(f"{split_name} split, hit@3 / MRR:\n")
        table(["set", "category", "questions", *chosen], rows)


if __name__ == "__main__":
    main()
