"""Response cache: requests/s on a 70%-hit workload, cache on vs. the same workload with it off.

Both runs use the demo model through `stratum serve`, greedy (temperature 0, so every request is
cacheable), the same request sequence, the same closed-loop concurrency, one server at a time.
The sequence: 30% of positions introduce a new question (a demo question with a unique suffix), 70%
repeat a question introduced at least ``2 * concurrency`` positions earlier (more than the requests
in flight in a closed loop), so its answer is in the cache by then when the cache is on. The hit
rate actually seen (``x-stratum-cache``) is reported, not assumed. Run it with::

    python benchmarks/cache_bench.py [--requests 200] [--concurrency 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from load import Sample, make_client, run_load
from processes import Progress, free_port, running, stratum_command, stratum_env
from stats import ms, p50_p99, ratio

from stratum.engine.demo import demo_model_dir, ensure_demo_model

QUESTIONS = (
    "Who are you?",
    "How do I add a model?",
    "How do I create an API key?",
    "What is RAG?",
    "Describe the gateway.",
    "What does error 429 mean?",
    "你是谁？",
    "Stratum 的数据存在哪里？",
    "Stratum 使用哪个端口？",
    "你为什么这么小？",
)
HIT_SHARE = 0.7


def workload(count: int, concurrency: int, seed: int = 0) -> list[str]:
    """The question of each position (see the module docstring)."""
    rng = random.Random(seed)
    sequence: list[str] = []
    introduced: list[tuple[int, str]] = []
    repeats = 0
    for position in range(count):
        ready = [q for at, q in introduced if at <= position - 2 * concurrency]
        # Repeat whenever the running share is below 70%: the first positions have nothing to
        # repeat yet, later ones catch up, so the whole sequence ends at 70% (±1 request).
        if ready and repeats < HIT_SHARE * (position + 1):
            sequence.append(rng.choice(ready))
            repeats += 1
            continue
        question = f"{QUESTIONS[len(introduced) % len(QUESTIONS)]} (#{len(introduced)})"
        introduced.append((position, question))
        sequence.append(question)
    return sequence


async def measure(
    base_url: str, key: str, questions: list[str], *, concurrency: int, max_tokens: int
) -> tuple[float, list[Sample], int, list[str]]:
    headers = {"authorization": f"Bearer {key}"}
    hits = 0

    async def send(client: httpx.AsyncClient, index: int) -> Sample:
        nonlocal hits
        body = {
            "model": "stratum-demo",
            "messages": [{"role": "user", "content": questions[index]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        started = time.perf_counter()
        response = await client.post(f"{base_url}/v1/chat/completions", json=body, headers=headers)
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"] or ""
        hits += response.headers.get("x-stratum-cache") == "hit"
        return Sample(index=index, latency=time.perf_counter() - started, text=text)

    async with make_client(concurrency) as client:
        result = await run_load(client, send, count=len(questions), concurrency=concurrency)
    return len(questions) / result.wall_seconds, result.samples, hits, result.errors


def run_cache_bench(
    *, workdir: Path, cache: Path, requests: int, concurrency: int, max_tokens: int, progress: Progress
) -> dict[str, Any]:
    model_dir = ensure_demo_model(cache, progress=lambda line: progress(f"demo model: {line}"))
    questions = workload(requests, concurrency)
    results: dict[str, Any] = {}
    answers: dict[str, list[str]] = {}
    for label, cache_on in (("cache off", False), ("cache on", True)):
        home = workdir / label.replace(" ", "-")
        shutil.copytree(model_dir, demo_model_dir(home))
        port, key = free_port(), "sk-bench-" + secrets.token_urlsafe(24)
        env = stratum_env(
            home,
            port=str(port),
            admin_key=key,
            demo_model="true",
            embeddings_model="false",
            cache="true" if cache_on else "false",
        )
        with running(
            [stratum_command(), "serve"],
            env=env,
            cwd=workdir,
            log_path=workdir / f"{home.name}.log",
            ready_url=f"http://127.0.0.1:{port}/readyz",
            name=f"stratum gateway ({label})",
            progress=progress,
        ):
            base_url = f"http://127.0.0.1:{port}"
            # Warm-up outside the measurement (first passes after loading run slower), on
            # questions the workload never asks.
            asyncio.run(
                measure(base_url, key, list(QUESTIONS), concurrency=concurrency, max_tokens=max_tokens)
            )
            rate, samples, hits, errors = asyncio.run(
                measure(base_url, key, questions, concurrency=concurrency, max_tokens=max_tokens)
            )
        if errors:
            raise RuntimeError(f"{label}: {len(errors)} failed requests, first: {errors[0]}")
        p50, p99 = p50_p99([s.latency for s in samples])
        results[label] = {"requests_per_s": rate, "hit_rate": hits / len(questions), "p50": p50, "p99": p99}
        answers[label] = [s.text for s in sorted(samples, key=lambda s: s.index)]
        progress(f"{label}: {rate:.2f} req/s, hit rate {hits / len(questions):.0%}")
    # Greedy decoding: a cached answer must equal a freshly generated one.
    same = sum(a == b for a, b in zip(answers["cache off"], answers["cache on"], strict=True))
    results["identical_answers"] = same / len(questions)
    results["speedup"] = ratio(results["cache on"]["requests_per_s"], results["cache off"]["requests_per_s"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "stratum-bench")
    args = parser.parse_args()
    started = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="stratum-cache-bench-") as tmp:
        results = run_cache_bench(
            workdir=Path(tmp),
            cache=args.cache,
            requests=args.requests,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            progress=progress,
        )
    print()
    title = f"run (demo model, {args.requests} requests, {args.concurrency} clients)"
    print(f"| {title} | req/s | hit rate | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for label in ("cache off", "cache on"):
        row = results[label]
        rate, hits = f"{row['requests_per_s']:.2f}", f"{row['hit_rate']:.0%}"
        print(f"| {label} | {rate} | {hits} | {ms(row['p50'])} | {ms(row['p99'])} |")
    speedup, same = results["speedup"], results["identical_answers"]
    print(f"\nspeed-up with the cache: {speedup:.2f}x; identical answers: {same:.0%}")


if __name__ == "__main__":
    main()
