"""Compression: size, speed and quality of each method against its parent, measured in one run.

    python benchmarks/compress_bench.py [--params 100m|20m] [--kd-steps 100] [--threads 2]

Two parents, because one model cannot show both honestly:

- speed and size: a ~100M-parameter Llama built from a config (random weights, fixed seed) — big
  enough that the matrix multiplies dominate, as in a real model. Its perplexity is meaningless.
- quality: the demo model (trained on the bundled corpus), perplexity on the odd assistant lines of
  the corpus; distillation trains on the even ones only (the parent saw every line in its own
  training, so read the change, not the level).

Every child is measured with the same harness as its parent (``stratum.training.compression.measure``:
weights bytes on disk, greedy tokens/s for 32 new tokens at batch 1 and 8, perplexity).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny import build_tiny_llama  # noqa: E402

from stratum.engine.demo import ensure_demo_model  # noqa: E402
from stratum.engine.weights import load_causal_lm  # noqa: E402
from stratum.training.compression.distill import distill  # noqa: E402
from stratum.training.compression.measure import Measures, measure  # noqa: E402
from stratum.training.compression.prune import prune  # noqa: E402
from stratum.training.compression.quantize import quantize  # noqa: E402

PROMPT = "Stratum 是一个企业大模型平台。It serves models and"
# (hidden, layers, MLP width), embeddings tied: 100m ≈ 95M parameters with the 32k vocabulary.
SIZES = {"100m": (768, 10, 2048), "20m": (384, 6, 1024)}


def corpus_texts() -> list[str]:
    corpus = ROOT / "src" / "stratum" / "engine" / "demo_corpus"
    lines = []
    for path in sorted(corpus.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("assistant: "):
                lines.append(line.removeprefix("assistant: "))
    return lines[::6][:40]  # a spread of 40 lines keeps the run short


def big_llama(target: Path, size: str) -> Path:
    hidden, layers, intermediate = SIZES[size]
    build_tiny_llama(target, seed=0)  # for the tokenizer files
    tokenizer = AutoTokenizer.from_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    return target


def row(name: str, m: Measures, base: Measures, params: int | None = None) -> str:
    return (
        f"| {name} | {m.size_bytes / 2**20:.1f} | {m.size_bytes / base.size_bytes:.2f} | "
        f"{m.tokens_per_s_batch1:.1f} | {m.tokens_per_s_batch1 / base.tokens_per_s_batch1:.2f} | "
        f"{m.tokens_per_s_batch8:.1f} | {m.tokens_per_s_batch8 / base.tokens_per_s_batch8:.2f} | "
        f"{m.perplexity:.2f} | {100 * (m.perplexity - base.perplexity) / base.perplexity:+.1f}% |"
    )


def measured(model: Any, tokenizer: Any, directory: Path, texts: list[str]) -> Measures:
    return measure(model, tokenizer, directory, texts, prompt=PROMPT)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", choices=sorted(SIZES), default="100m")
    parser.add_argument("--kd-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = corpus_texts()
    # The distillation pass trains on even lines and every perplexity is measured on odd lines, so
    # a KD row's change is not the student memorising the measured text. (The demo parent itself
    # was trained on the whole corpus: read changes relative to it, not the level.)
    kd_texts, held_out = texts[::2], texts[1::2]
    header = (
        "| variant | MiB | size × | tok/s b1 | × | tok/s b8 | × | perplexity | Δ ppl |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores); torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        parent = big_llama(work / "big", args.params)
        tokenizer = AutoTokenizer.from_pretrained(parent)
        params = sum(p.numel() for p in load_causal_lm(parent).parameters())
        print(f"\n## Speed and size: {params / 1e6:.0f}M Llama (random weights)\n")
        print(header)
        base = measured(load_causal_lm(parent), tokenizer, parent, texts[:4])
        print(row("fp32 (parent)", base, base))
        print(
            row(
                "int8 dynamic", measured(quantize(parent, work / "q"), tokenizer, work / "q", texts[:4]), base
            )
        )
        child = prune(parent, work / "s50", sparsity=0.5, method="structured")
        print(row("structured 50% MLP", measured(child, tokenizer, work / "s50", texts[:4]), base))

        demo = ensure_demo_model(work / "home")
        tokenizer = AutoTokenizer.from_pretrained(demo)
        print(
            f"\n## Quality: demo model, ppl on {len(held_out)} held-out corpus lines "
            f"(KD {args.kd_steps} steps on {len(kd_texts)} others)\n"
        )
        print(header)
        base = measured(load_causal_lm(demo), tokenizer, demo, held_out)
        print(row("fp32 (parent)", base, base))
        quantized = quantize(demo, work / "dq")
        print(row("int8 dynamic", measured(quantized, tokenizer, work / "dq", held_out), base))
        for sparsity in (0.4, 0.5, 0.6):
            target = work / f"m{sparsity}"
            child = prune(demo, target, sparsity=sparsity)
            print(row(f"magnitude {sparsity:.0%}", measured(child, tokenizer, target, held_out), base))
            child = distill(
                demo, work / f"m{sparsity}kd", texts=kd_texts, student_dir=target, steps=args.kd_steps
            )
            print(
                row(
                    f"magnitude {sparsity:.0%} + KD",
                    measured(child, tokenizer, work / f"m{sparsity}kd", held_out),
                    base,
                )
            )
        child = prune(demo, work / "ds", sparsity=0.5, method="structured")
        print(row("structured 50%", measured(child, tokenizer, work / "ds", held_out), base))
        child = distill(demo, work / "dskd", texts=kd_texts, student_dir=work / "ds", steps=args.kd_steps)
        print(row("structured 50% + KD", measured(child, tokenizer, work / "dskd", held_out), base))


if __name__ == "__main__":
    main()
