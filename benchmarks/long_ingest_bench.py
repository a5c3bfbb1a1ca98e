"""Full-pipeline ingest of *long* Chinese chunks (~600 characters, ~345 e5 tokens): chunks/s per encoder.

``embed_bench.py`` times the encoder alone; this times what a user waits for — extraction,
chunking, jieba tokens for BM25, embedding, and the writes and index updates of
``KnowledgeService.ingest`` — on Markdown whose sections are runs of long paragraphs, so that
nearly every chunk fills the KB's ``chunk_size`` (600 here, the issue's ~600-character chunks).
The text is the bundled demo corpus's answers and the eval corpora's prose (headings and tables
dropped), rotated between copies so no two documents are identical. Each encoder ingests into its
own KB, in alternating order over the rounds (ABC, CBA, ...) so that a neighbour's burst of load
lands on all of them about equally; the full model's row is the baseline of the ratio column.

A second table is the roofline (``roofline.py``): this machine's matrix rate, measured in the same
run on the encoder's shapes, and the chunks/s each model could reach on these very chunks if every
matrix product ran at that rate and nothing else took time — fp32, and for the full model also with
dynamic int8 projections (the "int8 path for the same e5 weights").

    PYTHONPATH=src python benchmarks/long_ingest_bench.py --copies 6 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch
from kb_bench import DEMO_ZH, SETS, TimedEncoder, setup, table
from roofline import ceiling, measure, work

from stratum.engine.e5_torch import TorchE5Encoder
from stratum.knowledge.schemas import KbCreate, KbSettings
from stratum.knowledge.text import warm_up


def prose(roots: list[Path]) -> list[str]:
    """Each Markdown file's paragraphs joined into one long paragraph (headings and tables dropped)."""
    out = []
    for path in sorted(p for root in roots for p in root.glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line.strip() for line in lines if line.strip() and not line.startswith(("#", "|", "-"))]
        if kept:
            out.append("".join(kept))
    return out


def write_folder(target: Path, copies: int) -> Path:
    target.mkdir(parents=True)
    lines = DEMO_ZH.read_text(encoding="utf-8").splitlines()
    # The demo corpus's answers (what embed_bench cuts its chunks from) and the eval corpora's prose.
    demo = [line.split(": ", 1)[-1] for line in lines if line.startswith("assistant: ")]
    paragraphs = prose(list(SETS.values())) + ["".join(demo[i : i + 8]) for i in range(0, len(demo), 8)]
    for n in range(copies):
        body = paragraphs[n:] + paragraphs[:n]
        text = "\n\n".join(body)[n * 7 :]  # a different cut per copy: no identical chunks
        (target / f"long_{n}.md").write_text(f"# 长文档（第{n + 1}份）\n\n{text}\n", encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=6, help="rotated copies of the prose (more chunks)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=600)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="long-ingest-"))
    service = setup(home)
    warm_up()
    folder = write_folder(home / "docs", args.copies)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}\n")
    encoders = {
        "multilingual-e5-small (fp32)": TimedEncoder(TorchE5Encoder(precision="fp32")),
        "multilingual-e5-small-6l": TimedEncoder(TorchE5Encoder(precision="fp32", student="e5-6l")),
        "multilingual-e5-small-4l": TimedEncoder(TorchE5Encoder(precision="fp32", student="e5-4l")),
    }
    for encoder in encoders.values():
        encoder.inner.load()
        encoder.encode(["预热"] * 2)
    totals = {name: [0.0, 0, 0.0, 0] for name in encoders}  # seconds, chunks, encoder seconds, characters
    texts: list[str] = []
    names = list(encoders)
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            encoder = encoders[name]
            settings = KbSettings(chunk_size=args.chunk_size)
            kb = service.create(
                KbCreate(name=f"long-{names.index(name)}-{round_}", settings=settings), project="bench/kb"
            )
            encoder.seconds = 0.0
            result = service.ingest(kb, [folder], encoder=encoder)
            chunks = [c.text for c in service.snapshot(service.get(project="bench/kb", name=kb.name)).chunks]
            texts = texts or chunks
            t = totals[name]
            t[0] += result.elapsed_s
            t[1] += result.chunks_done
            t[2] += encoder.seconds
            t[3] += sum(len(c) for c in chunks)
    lengths = sorted(len(c) for c in texts)
    tokens = statistics.median(encoders[names[0]].inner.count_tokens(texts))
    print(
        f"{args.copies} documents, chunk size {args.chunk_size}: {len(lengths)} chunks per KB, "
        f"characters per chunk median {statistics.median(lengths):.0f} (p10 "
        f"{lengths[len(lengths) // 10]}), e5 tokens per chunk median {tokens:.0f}, {args.rounds} rounds\n"
    )
    base = totals[names[0]][1] / totals[names[0]][0]
    table(
        ["encoder", "chunks", "seconds", "chunks/s", "characters/s", "vs full model", "encoder share"],
        [
            [name, c, f"{s:.1f}", f"{c / s:.2f}", f"{chars / s:.0f}", f"{c / s / base:.2f}x", f"{e / s:.0%}"]
            for name, (s, c, e, chars) in totals.items()
        ],
    )
    print(f"load average at end {os.getloadavg()[0]:.2f}\n")

    rates = measure()
    token_counts = encoders[names[0]].inner.count_tokens(texts)
    print(
        f"Roofline: matrix rate at {torch.get_num_threads()} threads, encoder shapes, best of 5: "
        f"fp32 {rates.fp32:.0f} GFLOP/s, dynamic int8 {rates.int8:.0f} GOP/s\n"
    )
    rows = []
    for name, layers, int8 in [
        (names[0], 12, False),
        (names[0] + ", int8 projections", 12, True),
        (names[1], 6, False),
        (names[2], 4, False),
    ]:
        w = work(token_counts, layers)
        measured = totals[name][1] / totals[name][0] if name in totals else None
        best = ceiling(len(token_counts), w, rates, int8=int8)
        rows.append(
            [
                name,
                f"{(w.linear + w.attention) / len(token_counts):.1f}",
                f"{best:.1f}",
                f"{measured:.2f} ({measured / best:.0%})" if measured else "not offered",
            ]
        )
    table(["encoder", "GFLOP per chunk", "ceiling chunks/s", "measured chunks/s (of ceiling)"], rows)


if __name__ == "__main__":
    main()
