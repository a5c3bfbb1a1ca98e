"""Engine core: LocalEngine's fused continuous batching vs. plain `transformers` generate, in-process.

    python benchmarks/engine_core_bench.py [--requests 32] [--max-tokens 64] [--threads 1]
                                           [--llama 100m|20m] [--skip-demo] [--transformers-cb]

No HTTP and no gateway (``engine_bench.py`` measures those): this isolates the scheduler and the
fused forward. Two models, each measured in one process, baseline first:

- a ~100M-parameter Llama built from a config with a fixed seed (random weights, the demo's
  byte-level tokenizer, as ``tests/tiny.py`` does), so the matrix multiplies dominate
  (``--llama 20m`` for a quicker ~20M one);
- the demo model (0.7M parameters), where Python overhead per step dominates.

The baseline is what someone would write without Stratum: ``model.generate`` greedy, batch 1, one
request after another. The engine serves the same prompts (same chat template, same
``max_tokens``, greedy) from 1, 8, 16 and 32 concurrent in-process clients; each client sends its next
request when the previous one ends. Both sides stop at the same EOS ids or ``max_tokens``; tokens
counted are the ones generated. The "same" column counts engine answers identical to the
baseline's (greedy decoding must agree, see tests/engine/test_batching.py). The box is small and
shared: read ratios from the same run, with the load average printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from stats import ms, p50_p99, ratio
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as transformers_logging

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.demo import ensure_demo_model
from stratum.engine.demo_conversations import load_conversations
from stratum.engine.demo_tokenizer import train_tokenizer, wrap_tokenizer
from stratum.engine.local import DEFAULT_PREFILL_CHUNK, LocalEngine
from stratum.engine.prompting import PromptBuilder

# English and Chinese, short and long, so the batch always mixes prompt lengths.
PROMPTS = (
    "Who are you?",
    "How do I add a model?",
    "Stratum 的数据存在哪里？",
    "What does error 429 mean? Explain what the gateway does when the engine queue is full.",
    "你是谁？",
    "Describe the gateway, the registry, the engine and how a request flows through all three.",
    "How many requests can Stratum handle at once?",
    "Stratum 使用哪个端口？请详细说明如何修改端口、如何查看日志以及如何创建新的 API 密钥。",
)
CONCURRENCY = (1, 8, 16, 32)
WARMUP = 2  # untimed generations per side: weights into cache, kernels chosen


@dataclass
class Sample:
    ttft: float
    tokens: int
    text: str
    gaps: list[float]  # seconds per token between consecutive deliveries


@dataclass
class Run:
    mode: str
    concurrency: int
    samples: list[Sample]
    wall: float
    same: int | None = None

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall


# Llama shapes built from a config. "100m": 14 layers, 768 wide, MLP 2304, 12 heads / 4 KV heads
# (~99M parameters with the 2k vocabulary, the size the issue names); "20m": 6 x 512, MLP 1408.
LLAMA_SIZES: dict[str, dict[str, int]] = {
    "100m": {
        "hidden_size": 768,
        "intermediate_size": 2304,
        "num_hidden_layers": 14,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
    },
    "20m": {
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
    },
}


def build_llama(target: Path, size: str = "100m") -> Path:
    """A random-weight Llama of ``LLAMA_SIZES[size]`` with the demo's byte-level tokenizer (seed 0)."""
    tokenizer = wrap_tokenizer(train_tokenizer(load_conversations(), vocab_size=2048), context_length=1024)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **LLAMA_SIZES[size],
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


class _Clock(BaseStreamer):
    """Timestamps the tokens ``generate`` produces (its first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


def run_baseline(model_dir: Path, prompts: list[str], max_tokens: int) -> Run:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    builder = PromptBuilder(tokenizer)
    eos = model.generation_config.eos_token_id
    eos_ids = sorted(({eos} if isinstance(eos, int) else set(eos or ())) | {tokenizer.eos_token_id})

    def one(prompt: str) -> Sample:
        started = time.perf_counter()  # before templating: the engine's TTFT includes it too
        ids = builder.chat([{"role": "user", "content": prompt}])
        clock = _Clock()
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=eos_ids,
                pad_token_id=tokenizer.pad_token_id,
                streamer=clock,
            )
        new = out[0, len(ids) :].tolist()
        times = [started, *clock.times]
        return Sample(
            ttft=clock.times[0] - started,
            tokens=len(new),
            text=builder.decode([t for t in new if t not in eos_ids]),
            gaps=[b - a for a, b in itertools.pairwise(times[1:])],
        )

    for prompt in prompts[:WARMUP]:
        one(prompt)
    started = time.perf_counter()
    samples = [one(p) for p in prompts]
    return Run("transformers generate, batch 1", 1, samples, time.perf_counter() - started)


async def _engine_request(engine: LocalEngine, prompt: str, max_tokens: int) -> Sample:
    started = time.perf_counter()
    request = GenerationRequest(
        request_id="bench",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        messages=[{"role": "user", "content": prompt}],
    )
    text, times, tokens, seen = [], [started], 0, 0
    async for chunk in engine.generate(request):
        now = time.perf_counter()
        text.append(chunk.text)
        # A delta may carry several tokens (held-back bytes): spread its gap over them.
        fresh = max(1, chunk.completion_tokens - seen)
        times.extend([times[-1] + (now - times[-1]) * (i + 1) / fresh for i in range(fresh)])
        seen = tokens = chunk.completion_tokens
    return Sample(
        ttft=times[1] - started,
        tokens=tokens,
        text="".join(text),
        gaps=[b - a for a, b in itertools.pairwise(times[1:])],
    )


async def run_engine(model_dir: Path, prompts: list[str], max_tokens: int, prefill_chunk: int) -> list[Run]:
    engine = LocalEngine(
        model_dir, max_batch=max(CONCURRENCY), max_queue=len(prompts), prefill_chunk=prefill_chunk
    )
    await engine.start()
    try:
        for prompt in prompts[:WARMUP]:
            await _engine_request(engine, prompt, max_tokens)
        runs = []
        for concurrency in CONCURRENCY:
            pending = list(enumerate(prompts))
            samples: dict[int, Sample] = {}

            async def client(pending: list[tuple[int, str]], samples: dict[int, Sample]) -> None:
                # A closed-loop client: its next request goes out when the previous one ends.
                while pending:
                    index, prompt = pending.pop(0)
                    samples[index] = await _engine_request(engine, prompt, max_tokens)

            started = time.perf_counter()
            await asyncio.gather(*(client(pending, samples) for _ in range(concurrency)))
            wall = time.perf_counter() - started
            ordered = [samples[i] for i in range(len(prompts))]
            runs.append(Run("stratum engine", concurrency, ordered, wall))
        return runs
    finally:
        await engine.close()


def run_transformers_cb(model_dir: Path, prompts: list[str], max_tokens: int) -> Run:
    """transformers' own continuous batching (all requests at once, no streaming): for reference."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    builder = PromptBuilder(tokenizer)
    ids = [builder.chat([{"role": "user", "content": p}]) for p in prompts]
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id)
    # Small pages: the default 256-token page made CPU runs several times slower here.
    cb = ContinuousBatchingConfig(page_size=32, num_blocks=256, max_batch_tokens=512)
    model.generate_batch(ids[:WARMUP], generation_config=config, continuous_batching_config=cb)
    started = time.perf_counter()
    out = model.generate_batch(ids, generation_config=config, continuous_batching_config=cb)
    wall = time.perf_counter() - started
    samples = [
        Sample(math.nan, len(r.generated_tokens), builder.decode(r.generated_tokens), [])
        for r in out.values()
    ]
    return Run("transformers generate_batch (CB)", len(prompts), samples, wall)


def table(name: str, params: int, baseline: Run, runs: list[Run]) -> str:
    lines = [
        f"\n{name} ({params / 1e6:.1f}M parameters)\n",
        "| mode | clients | tokens | tok/s | x baseline | TTFT p50 ms | TTFT p99 ms "
        "| ITL p50 ms | ITL p99 ms | same as baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in [baseline, *runs]:
        ttft = p50_p99([s.ttft for s in run.samples if not math.isnan(s.ttft)])
        itl = p50_p99([g for s in run.samples for g in s.gaps])
        same = "" if run.same is None else f"{run.same}/{len(run.samples)}"
        lines.append(
            f"| {run.mode} | {run.concurrency} | {run.tokens} | {run.tokens_per_s:.0f} "
            f"| {ratio(run.tokens_per_s, baseline.tokens_per_s):.2f} | {ms(ttft[0])} | {ms(ttft[1])} "
            f"| {ms(itl[0])} | {ms(itl[1])} | {same} |"
        )
    return "\n".join(lines)


def bench(name: str, model_dir: Path, args: argparse.Namespace) -> str:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    print(f"{name}: baseline ...", file=sys.stderr, flush=True)
    baseline = run_baseline(model_dir, prompts, args.max_tokens)
    print(f"{name}: engine ...", file=sys.stderr, flush=True)
    runs = asyncio.run(run_engine(model_dir, prompts, args.max_tokens, args.prefill_chunk))
    if args.transformers_cb:
        print(f"{name}: transformers continuous batching ...", file=sys.stderr, flush=True)
        runs.append(run_transformers_cb(model_dir, prompts, args.max_tokens))
    for run in runs:
        run.same = sum(a.text == b.text for a, b in zip(run.samples, baseline.samples, strict=True))
    params = AutoModelForCausalLM.from_pretrained(model_dir).num_parameters()
    return table(name, params, baseline, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="Requests per configuration.")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request.")
    # 1 by default: on a shared 2-core box a second OpenMP thread spends its time waiting for a
    # core the neighbours hold (measured: the demo model ran from 2x faster to 20x slower with 2).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    parser.add_argument("--prefill-chunk", type=int, default=DEFAULT_PREFILL_CHUNK)
    parser.add_argument(
        "--transformers-cb", action="store_true", help="Also time transformers' generate_batch."
    )
    parser.add_argument("--llama", choices=sorted(LLAMA_SIZES), default="100m", help="Llama size.")
    parser.add_argument("--skip-demo", action="store_true", help="Only the Llama built from a config.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started, load = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        llama = build_llama(Path(tmp) / "llama", args.llama)
        tables = [bench(f"llama-{args.llama} (random weights)", llama, args)]
        if not args.skip_demo:
            demo = ensure_demo_model(Path.home() / ".cache" / "stratum-bench")
            tables.append(bench("stratum-demo", demo, args))
    print("\n".join(tables))
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, {args.requests} requests x "
        f"max_tokens {args.max_tokens}, greedy, prefill chunk {args.prefill_chunk}; "
        f"load average {load[0]:.2f} -> {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
