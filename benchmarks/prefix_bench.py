"""Prefix reuse: a long shared system prompt, the engine's prefix cache on vs. off, in one process.

    python benchmarks/prefix_bench.py [--quick] [--llama 100m|20m] [--requests 24] [--threads 1]

Every request is the same long system prompt (English and Chinese, ~500 tokens) plus its own short
question, as a support bot's traffic is. Two ``LocalEngine`` instances serve the same model from
the same process, one with ``prefix_cache_tokens=0`` (off) and one with the cache on; they are
measured alternately in ABBA rounds so a neighbour's load lands on both. Per round and engine:

- TTFT at 1 and 8 closed-loop clients (``max_tokens`` 8): time to the first streamed token;
- prefill throughput at 8 clients with ``max_tokens`` 1: prompt tokens served per second of wall
  time (each request ends with its first token, so the run is all prefill), and prompt tokens the
  engine actually computed per second (served minus reused).

One warm-up request per engine (untimed) precedes the rounds; for the cache that request is what
fills it, as the first request after a deployment would. The "same" column counts answers equal
to the cache-off engine's for the same request (greedy: reuse must not change the output).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from engine_core_bench import LLAMA_SIZES, build_llama
from stats import ms, p50_p99, ratio
from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.engine.prompting import PromptBuilder

SYSTEM = (
    "You are the support assistant of Stratum, an enterprise LLM platform. Answer in the user's "
    "language, briefly and politely. Never reveal API keys, never invent features, and when you do "
    "not know, say so and point to the documentation. Stratum serves models behind an "
    "OpenAI-compatible gateway with keys per project, quotas, a content guard and an audit log. "
    "你是 Stratum 的客服助手。请用用户的语言简洁、礼貌地回答。不要泄露任何密钥，不要编造功能；"
    "不知道的时候请直说，并给出文档的位置。Stratum 提供兼容 OpenAI 的网关、按项目的密钥、配额、"
    "内容安全和审计日志。"
)
QUESTIONS = (
    "How do I add a model?",
    "Stratum 的数据存在哪里？",
    "What does error 429 mean?",
    "你是谁？",
    "How many requests can Stratum handle at once?",
    "如何修改端口？",
    "Can I use my own LoRA adapter?",
    "怎么查看日志？",
)


@dataclass
class Phase:
    name: str
    clients: int
    cache: bool
    ttfts: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    reused_tokens: int = 0
    hits: int = 0
    wall: float = 0.0
    texts: dict[int, str] = field(default_factory=dict)  # request index -> answer
    same: int = 0
    compared: int = 0


def _request(index: int, max_tokens: int) -> GenerationRequest:
    question = f"{QUESTIONS[index % len(QUESTIONS)]} (#{index})"
    return GenerationRequest(
        request_id=f"prefix-{index}",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        messages=[{"role": "system", "content": SYSTEM * 2}, {"role": "user", "content": question}],
    )


async def _one(engine: LocalEngine, request: GenerationRequest) -> tuple[float, str, int]:
    started = time.perf_counter()
    ttft, parts, prompt_tokens = None, [], 0
    async for chunk in engine.generate(request):
        if ttft is None:
            ttft = time.perf_counter() - started
        parts.append(chunk.text)
        prompt_tokens = chunk.prompt_tokens
    assert ttft is not None
    return ttft, "".join(parts), prompt_tokens


async def _run(engine: LocalEngine, phase: Phase, indices: list[int], max_tokens: int) -> None:
    pending = list(indices)
    stats = engine.prefix_stats
    hits, reused = (stats.hits, stats.tokens_reused) if stats is not None else (0, 0)

    async def client() -> None:
        while pending:
            index = pending.pop(0)
            ttft, text, prompt_tokens = await _one(engine, _request(index, max_tokens))
            phase.ttfts.append(ttft)
            phase.prompt_tokens += prompt_tokens
            phase.texts[index] = text

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(phase.clients)))
    phase.wall += time.perf_counter() - started
    if stats is not None:
        phase.hits += stats.hits - hits
        phase.reused_tokens += stats.tokens_reused - reused


async def bench(model_dir: Path, *, requests: int, rounds: int) -> list[Phase]:
    engines = {
        False: LocalEngine(model_dir, max_batch=16, max_queue=64),
        True: LocalEngine(model_dir, max_batch=16, max_queue=64, prefix_cache_tokens=4096),
    }
    for engine in engines.values():
        await engine.start()
    try:
        for engine in engines.values():  # warm-up; fills the cache of the reusing engine
            await _one(engine, _request(10_000, 4))
        plan = [("TTFT", 1, 8), ("TTFT", 8, 8), ("prefill", 8, 1)]
        phases = {(n, c, cache): Phase(n, c, cache) for n, c, _ in plan for cache in (False, True)}
        for round_index in range(rounds):
            order = (False, True) if round_index % 2 == 0 else (True, False)
            for name, clients, max_tokens in plan:
                # Fresh questions per phase and round; the same ones for both engines.
                base = 1000 * round_index + 100 * clients + max_tokens
                indices = [base + i for i in range(requests)]
                for cache in order:
                    await _run(engines[cache], phases[name, clients, cache], indices, max_tokens)
                    print(
                        f"[round {round_index + 1}/{rounds}] {name} {clients} clients, cache "
                        f"{'on' if cache else 'off'}: done",
                        file=sys.stderr,
                        flush=True,
                    )
        for (name, clients, cache), phase in phases.items():
            if cache:
                off = phases[name, clients, False].texts
                phase.compared = len(phase.texts)
                phase.same = sum(off.get(index) == text for index, text in phase.texts.items())
        return list(phases.values())
    finally:
        for engine in engines.values():
            await engine.close()


def table(model: str, phases: list[Phase], system_tokens: int) -> str:
    lines = [
        f"### Prefix reuse: {model}, prompts of ~{system_tokens} tokens, all but the question shared",
        "",
        "| phase | clients | prefix cache | requests | TTFT p50 ms | TTFT p99 ms | prompt tok/s served | "
        "prompt tok/s computed | hits | tokens reused | same as off |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in phases:
        p50, p99 = p50_p99(p.ttfts)
        served = ratio(p.prompt_tokens, p.wall)
        computed = ratio(p.prompt_tokens - p.reused_tokens, p.wall)
        same = f"{p.same}/{p.compared}" if p.cache else "-"
        lines.append(
            f"| {p.name} | {p.clients} | {'on' if p.cache else 'off'} | {len(p.ttfts)} | {ms(p50)} | "
            f"{ms(p99)} | {served:.0f} | {computed:.0f} | {p.hits} | {p.reused_tokens} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama", choices=sorted(LLAMA_SIZES), default="100m", help="Llama size.")
    parser.add_argument("--requests", type=int, default=24, help="Requests per phase, round and engine.")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    parser.add_argument("--quick", action="store_true", help="20M Llama, 8 requests, 2 rounds.")
    args = parser.parse_args()
    if args.quick:
        args.llama, args.requests, args.rounds = "20m", 8, 2
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started, load = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_llama(Path(tmp) / "llama", args.llama)
        messages = _request(0, 1).messages
        assert messages is not None
        system_tokens = len(PromptBuilder(AutoTokenizer.from_pretrained(model_dir)).chat(messages))
        phases = asyncio.run(bench(model_dir, requests=args.requests, rounds=args.rounds))
    print(table(f"llama-{args.llama} (random weights)", phases, system_tokens))
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, greedy; {args.requests} requests per phase, "
        f"round and engine, {args.rounds} ABBA rounds; load average {load[0]:.2f} -> "
        f"{os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
