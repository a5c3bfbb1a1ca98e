"""Engine: models through `stratum serve` (SSE, 1, 8, 16, 32 clients) vs. `transformers` generate.

Models: the demo model, and (``llama``) a ~100M-parameter Llama built from a config with random
weights (``engine_core_bench.build_llama``), registered on the same server with ``stratum models add``.

The baseline is what someone would write without Stratum: load the same directory with
``AutoModelForCausalLM`` and call ``model.generate`` once per request, batch 1, greedy. Both sides
get the same prompts in the same chat template (Stratum's own ``PromptBuilder``), the same
``max_tokens`` and the same end-of-sequence ids, so greedy decoding must produce the same tokens;
the harness checks that per request instead of assuming it. Both sides stop at the same
end-of-sequence or at ``max_tokens``, whichever comes first (the engine has no ``ignore_eos``), and the
token counts reported are the ones actually generated: the demo model ends most answers before 64.

The three configurations (baseline, 1 client, N clients) run in several rounds, in ABC then CBA
order, while the server stays up (idle, it uses no CPU: its engine thread sleeps on a condition).
A neighbour's burst of load then lands on all of them about equally, and the per-round spread is
reported next to the pooled rate so the noise is visible rather than hidden in one number.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch
from load import Sample, make_client, post_stream, run_load
from processes import Progress, free_port, run_checked, running, stratum_command, stratum_env
from stats import ms, p50_p99, ratio
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as transformers_logging

from stratum.engine.demo import DEMO_MODEL_NAME, demo_model_dir, ensure_demo_model
from stratum.engine.prompting import PromptBuilder

# Questions the toy model answered with 25-50 tokens when this list was made, English and Chinese
# alike: short answers would make the benchmark mostly about time to first token.
PROMPTS = (
    "Who are you?",
    "How do I add a model?",
    "How do I create an API key?",
    "What is RAG?",
    "Can I trust your answers?",
    "Describe the gateway.",
    "How do I create a knowledge base?",
    "What does error 429 mean?",
    "How do I see metrics?",
    "Can I fine-tune a model?",
    "How many requests can Stratum handle at once?",
    "Write a long story about a platform.",
    "你是谁？",
    "Stratum 的数据存在哪里？",
    "你为什么这么小？",
    "Stratum 使用哪个端口？",
)


@dataclass
class Config:
    """One measured configuration, pooled over its rounds."""

    name: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    round_rates: list[float] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.completion_tokens or 0 for s in self.samples)

    def add(self, samples: list[Sample], errors: list[str], wall_seconds: float) -> float:
        tokens = sum(s.completion_tokens or 0 for s in samples)
        self.samples.extend(samples)
        self.errors.extend(errors)
        self.wall_seconds += wall_seconds
        self.round_rates.append(ratio(tokens, wall_seconds))
        return self.round_rates[-1]


def prompt_for(index: int) -> str:
    return PROMPTS[index % len(PROMPTS)]


class _TokenClock(BaseStreamer):
    """Timestamps every token ``generate`` produces (its first ``put`` is the prompt, skipped)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter() - self.started)

    def end(self) -> None:
        pass


class Baseline:
    """``transformers`` generate, batch 1, greedy, in this process."""

    def __init__(self, model_dir: Path) -> None:
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # Loaded exactly as LocalEngine loads it (float32, eval mode).
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.prompts = PromptBuilder(self.tokenizer)
        # LocalEngine stops on the generation config's and the tokenizer's EOS ids; so must we.
        configured = self.model.generation_config.eos_token_id
        eos = {configured} if isinstance(configured, int) else set(configured or ())
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos)

    def generate(self, index: int, max_new_tokens: int) -> Sample:
        started = time.perf_counter()
        # Timed from before templating and tokenising: the engine does both inside its TTFT too.
        ids = self.prompts.chat([{"role": "user", "content": prompt_for(index)}])
        clock = _TokenClock(started)
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.eos_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                streamer=clock,
            )
        new = out[0, len(ids) :].tolist()
        text = self.prompts.decode([t for t in new if t not in self.eos_ids])
        # The engine streams no content for the end-of-sequence token, so its time is no token here.
        times = clock.times[:-1] if new and new[-1] in self.eos_ids else clock.times
        return Sample(
            index=index,
            latency=time.perf_counter() - started,
            text=text,
            content_times=times,
            completion_tokens=len(new),  # the EOS token counts, as in the engine's usage
        )

    def warm_up(self, max_new_tokens: int) -> None:
        # One pass over every prompt, excluded. Measured here: the first passes after loading ran
        # 2-4x slower than later ones (caches, thread pool, allocator); two generations were not enough.
        for index in range(len(PROMPTS)):
            self.generate(index, max_new_tokens)


def prepare_model(cache: Path, progress: Progress) -> Path:
    """The demo model, built once into the persistent ``cache`` (minutes on a busy 2-core box)."""
    return ensure_demo_model(cache, progress=lambda line: progress(f"engine: {line}"))


@dataclass(frozen=True)
class ModelPlan:
    """One model to measure: where it is, its served name, and how much to ask of it."""

    name: str
    path: Path
    requests: int
    rounds: int
    max_tokens: int


def run_engine_bench(
    *,
    workdir: Path,
    cache: Path,
    requests: int,
    rounds: int,
    concurrency: int | list[int],
    max_tokens: int,
    torch_threads: int,
    progress: Progress,
    llama: str | None = None,
    llama_requests: int = 32,
    llama_max_tokens: int = 32,
) -> dict[str, Any]:
    """Measure the demo model (and the ``llama`` size built from a config, if given): a report each.

    Returns the demo model's report, with the Llama's under ``"more"`` (a list) when measured.
    """
    concurrencies = sorted({1, *concurrency}) if isinstance(concurrency, list) else [1, concurrency]
    model_dir = prepare_model(cache, progress)
    # Same intra-op thread count on both sides; see run.py for why it defaults to 1.
    torch.set_num_threads(torch_threads)
    home, logs = workdir / "engine-home", workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # A copy of the cached build: the server finds it current (same fingerprint) and skips training,
    # while its own database and logs stay in the throwaway home.
    shutil.copytree(model_dir, demo_model_dir(home))
    plans = [ModelPlan(DEMO_MODEL_NAME, model_dir, requests, rounds, max_tokens)]
    if llama is not None:
        from engine_core_bench import build_llama

        progress(f"engine: building llama-{llama} from a config")
        llama_dir = build_llama(workdir / f"llama-{llama}", llama)
        plans.append(ModelPlan(f"llama-{llama}", llama_dir, llama_requests, 1, llama_max_tokens))
    port = free_port()
    admin_key = "sk-bench-" + secrets.token_urlsafe(24)
    env = stratum_env(
        home,
        port=str(port),
        admin_key=admin_key,
        demo_model="true",
        embeddings_model="false",
        torch_threads=str(torch_threads),
        max_batch=str(max(concurrencies)),
        max_queue=str(max(2 * max(concurrencies), 64)),
    )
    for plan in plans[1:]:
        run_checked(
            [stratum_command(), "models", "add", plan.name, "--path", str(plan.path)],
            env=env,
            cwd=workdir,
            log_path=logs / "engine-gateway.log",
        )
    reports = []
    with running(
        [stratum_command(), "serve"],
        env=env,
        cwd=workdir,
        log_path=logs / "engine-gateway.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        name="stratum gateway (demo model)",
        progress=progress,
    ):
        for plan in plans:
            baseline = Baseline(plan.path)
            configs = asyncio.run(
                _measure(
                    baseline,
                    model=plan.name,
                    url=f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers={"authorization": f"Bearer {admin_key}"},
                    requests=plan.requests,
                    rounds=plan.rounds,
                    concurrencies=concurrencies,
                    max_tokens=plan.max_tokens,
                    progress=progress,
                )
            )
            reports.append(
                _report(
                    configs,
                    model=plan.name,
                    max_tokens=plan.max_tokens,
                    requests=plan.requests,
                    rounds=plan.rounds,
                    parameters=baseline.model.num_parameters(),
                    torch_threads=torch_threads,
                )
            )
            del baseline
    report = reports[0]
    if reports[1:]:
        report["more"] = reports[1:]
    return report


async def _measure(
    baseline: Baseline,
    *,
    model: str,
    url: str,
    headers: dict[str, str],
    requests: int,
    rounds: int,
    concurrencies: list[int],
    max_tokens: int,
    progress: Progress,
) -> list[Config]:
    async def send(client: httpx.AsyncClient, index: int) -> Sample:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt_for(index)}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return await post_stream(client, url, body, headers, index)

    configs = [Config("transformers generate (baseline)", 1)] + [
        Config(f"stratum serve, {n} client{'s' if n > 1 else ''}", n) for n in concurrencies
    ]
    clients = {n: make_client(n) for n in concurrencies}
    try:
        # Warm-up (excluded): a pass over every prompt on each path, and at least one request per
        # worker so that every connection is open before timing starts.
        baseline.warm_up(max_tokens)
        for workers, client in clients.items():
            warm = await run_load(client, send, count=max(workers, len(PROMPTS)), concurrency=workers)
            if warm.errors:
                raise RuntimeError(f"engine warm-up failed: {warm.errors[0]}")
        progress(f"engine: {model} warm-up done; {rounds} rounds of {requests} requests per configuration")
        for round_index in range(rounds):
            order = configs if round_index % 2 == 0 else configs[::-1]
            for config in order:
                if config is configs[0]:
                    # Blocks this event loop for a second or two, on purpose: nothing else may run
                    # in this process while the baseline is timed (the clients are idle meanwhile).
                    started = time.perf_counter()
                    samples = [baseline.generate(i, max_tokens) for i in range(requests)]
                    rate = config.add(samples, [], time.perf_counter() - started)
                else:
                    client = clients[config.concurrency]
                    result = await run_load(client, send, count=requests, concurrency=config.concurrency)
                    rate = config.add(result.samples, result.errors, result.wall_seconds)
                progress(f"engine: {model} round {round_index + 1}/{rounds} {config.name}: {rate:.0f} tok/s")
    finally:
        for client in clients.values():
            await client.aclose()
    return configs


def _summary(config: Config, *, reference: dict[int, Sample], baseline_tps: float) -> dict[str, Any]:
    ttft50, ttft99 = p50_p99([s.ttft for s in config.samples if s.ttft is not None])
    itl50, itl99 = p50_p99([gap for s in config.samples for gap in s.gaps])
    # Greedy decoding of the same prompt must give the same tokens and text on every path.
    same = sum(
        1
        for s in config.samples
        if s.completion_tokens == reference[s.index].completion_tokens and s.text == reference[s.index].text
    )
    tps = ratio(config.tokens, config.wall_seconds)
    return {
        "name": config.name,
        "concurrency": config.concurrency,
        "requests_ok": len(config.samples),
        "errors": len(config.errors),
        "first_errors": config.errors[:3],
        "completion_tokens": config.tokens,
        "tokens_per_request": ratio(config.tokens, len(config.samples)),
        "wall_seconds": config.wall_seconds,
        "tokens_per_s": tps,
        "tokens_per_s_per_round": config.round_rates,
        "ratio_to_baseline": ratio(tps, baseline_tps),
        "ttft_p50_s": ttft50,
        "ttft_p99_s": ttft99,
        "itl_p50_s": itl50,
        "itl_p99_s": itl99,
        "same_output_as_baseline": same,
    }


def _report(
    configs: list[Config],
    *,
    model: str,
    max_tokens: int,
    requests: int,
    rounds: int,
    parameters: int,
    torch_threads: int,
) -> dict[str, Any]:
    baseline = configs[0]
    baseline_tps = ratio(baseline.tokens, baseline.wall_seconds)
    # The first baseline round's output per request index is the reference for "same output".
    reference = {s.index: s for s in baseline.samples[:requests]}
    return {
        "model": model,
        "parameters": parameters,
        "max_tokens": max_tokens,
        "torch_threads": torch_threads,
        "requests_per_round": requests,
        "rounds": rounds,
        "prompts": len(PROMPTS),
        "baseline_tokens_per_s": baseline_tps,
        "runs": [_summary(c, reference=reference, baseline_tps=baseline_tps) for c in configs],
    }


def markdown(report: dict[str, Any]) -> str:
    """The demo model's table, then one per extra model measured."""
    return "\n\n".join(_markdown_one(r) for r in [report, *report.get("more", [])])


def _markdown_one(report: dict[str, Any]) -> str:
    lines = [
        f"### Engine: {report['model']} ({report['parameters']:,} parameters), greedy, max_tokens "
        f"{report['max_tokens']}, {report['rounds']} rounds x {report['requests_per_round']} requests "
        f"over {report['prompts']} prompts, {report['torch_threads']} torch thread(s) on both sides",
        "",
        "Baseline: transformers `generate`, batch 1, in-process (no HTTP). Rounds interleaved ABC/CBA; "
        "tok/s pooled over rounds, with the slowest and fastest round.",
        "",
        "| run | ok | errors | tokens | tok/req | tok/s | rounds min-max | vs baseline | TTFT p50 ms | "
        "TTFT p99 ms | ITL p50 ms | ITL p99 ms | same output |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["runs"]:
        per_round = r["tokens_per_s_per_round"]
        lines.append(
            f"| {r['name']} | {r['requests_ok']} | {r['errors']} | {r['completion_tokens']} | "
            f"{r['tokens_per_request']:.1f} | {r['tokens_per_s']:.0f} | "
            f"{min(per_round):.0f}-{max(per_round):.0f} | {r['ratio_to_baseline']:.2f}x | "
            f"{ms(r['ttft_p50_s'])} | {ms(r['ttft_p99_s'])} | {ms(r['itl_p50_s'])} | {ms(r['itl_p99_s'])} | "
            f"{r['same_output_as_baseline']}/{r['requests_ok']} |"
        )
    return "\n".join(lines)
