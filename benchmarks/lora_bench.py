"""Multi-LoRA: memory per extra adapter, and what mixing adapters in one batch costs, in-process.

    python benchmarks/lora_bench.py [--llama 20m|100m] [--adapters 8] [--rank 16]
                                    [--requests 32] [--clients 16] [--max-tokens 32] [--threads 1]

One base model (a random-weight Llama built from a config, as in ``engine_core_bench.py``) in one
``LocalEngine``; ``--adapters`` PEFT LoRA adapters (random A and B, fixed seeds) on every
projection (q, k, v, o, gate, up, down) are loaded into it one by one while it runs. Reported:

- memory per extra adapter: the adapter's weights as held by the engine, and the growth of the
  process's resident memory when it was loaded (no second copy of the base is ever made);
- tokens/s of the same requests from ``--clients`` concurrent clients: all on the base model, all
  on one adapter, and each request on a different adapter (round-robin), in one mixed batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from engine_core_bench import LLAMA_SIZES, PROMPTS, build_llama
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM
from transformers.utils import logging as transformers_logging

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; the box the benchmarks target)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_adapters(base: Path, root: Path, *, count: int, rank: int) -> list[Path]:
    model = LlamaForCausalLM.from_pretrained(base)
    paths = []
    for index in range(count):
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=MODULES, init_lora_weights=False)
        torch.manual_seed(100 + index)
        peft_model = get_peft_model(model, config)
        paths.append(root / f"adapter-{index}")
        peft_model.save_pretrained(paths[-1])
        model = peft_model.unload()  # back to the bare base for the next adapter
    return paths


async def _request(engine: LocalEngine, prompt: str, adapter: str | None, max_tokens: int) -> int:
    request = GenerationRequest(
        request_id="bench",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        messages=[{"role": "user", "content": prompt}],
        adapter=adapter,
    )
    tokens = 0
    async for chunk in engine.generate(request):
        tokens = chunk.completion_tokens
    return tokens


async def _throughput(
    engine: LocalEngine, adapters: list[str | None], *, requests: int, clients: int, max_tokens: int
) -> float:
    pending = list(range(requests))
    total = 0

    async def client() -> None:
        nonlocal total
        while pending:
            index = pending.pop(0)
            prompt = PROMPTS[index % len(PROMPTS)]
            tokens = await _request(engine, prompt, adapters[index % len(adapters)], max_tokens)
            total += tokens  # not `total += await ...`: that reads total before the await

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return total / (time.perf_counter() - started)


async def run(args: argparse.Namespace, base: Path, adapter_dirs: list[Path]) -> str:
    engine = LocalEngine(base, max_batch=max(args.clients, 1), max_queue=args.requests)
    await engine.start()
    try:
        lines = [
            f"### Multi-LoRA: llama-{args.llama} ({engine.info.parameters / 1e6:.1f}M parameters, "
            f"{engine.memory_bytes / 2**20:.0f} MiB of weights), rank {args.rank} on {len(MODULES)} "
            "projections",
            "",
            "| adapters loaded | adapter weights MiB | RSS growth MiB |",
            "|--:|--:|--:|",
        ]
        names = []
        for index, path in enumerate(adapter_dirs):
            before = rss_bytes()
            name = f"adapter-{index}"
            nbytes = await engine.load_adapter(name, path)
            names.append(name)
            lines.append(f"| {index + 1} | {nbytes / 2**20:.2f} | {(rss_bytes() - before) / 2**20:.2f} |")
        for prompt in PROMPTS[:2]:  # warm-up, excluded
            await _request(engine, prompt, names[0], args.max_tokens)
        lines += [
            "",
            f"{args.requests} requests x max_tokens {args.max_tokens}, "
            f"{args.clients} concurrent clients, greedy",
            "",
            "| batch | tok/s | vs base only |",
            "|---|--:|--:|",
        ]
        shapes: list[tuple[str, list[str | None]]] = [
            ("base model only", [None]),
            ("one adapter", [names[0]]),
            (f"{len(names)} adapters mixed + base rows", [None, *names]),
        ]
        base_rate = 0.0
        for label, adapters in shapes:
            print(f"lora: {label} ...", file=sys.stderr, flush=True)
            rate = await _throughput(
                engine, adapters, requests=args.requests, clients=args.clients, max_tokens=args.max_tokens
            )
            base_rate = base_rate or rate
            lines.append(f"| {label} | {rate:.0f} | {rate / base_rate:.2f}x |")
        return "\n".join(lines)
    finally:
        await engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama", choices=sorted(LLAMA_SIZES), default="20m")
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started, load = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        base = build_llama(Path(tmp) / "llama", args.llama)
        print("lora: building adapters ...", file=sys.stderr, flush=True)
        adapter_dirs = build_adapters(base, Path(tmp), count=args.adapters, rank=args.rank)
        print(asyncio.run(run(args, base, adapter_dirs)))
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads; load average {load[0]:.2f} -> "
        f"{os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
