"""Engine: the demo model through `stratum serve` (SSE, 1 and N clients) vs. `transformers` generate.

The baseline is what someone would write without Stratum: load the same directory with
``AutoModelForCausalLM`` and call ``model.generate`` once per request, batch 1, greedy. Both sides
get the same prompts in the same chat template (Stratum's own ``PromptBuilder``), the same
``max_tokens`` and the same end-of-sequence ids, so greedy decoding must produce the same tokens;
the harness checks that per request instead of assuming it. Both sides stop at the same
end-of-sequence or at ``max_tokens``, whichever comes first (the engine has no ``ignore_eos``), and the
token counts reported are the ones actually generated: the demo model ends most answers before 64.

The baseline runs twice, before the server starts and after it stops, so drift in the machine's
background load shows up in the report instead of silently skewing the ratio.
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
from processes import Progress, free_port, running, stratum_command, stratum_env
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
# Two untimed generations load the weights into cache and let torch pick its kernels.
BASELINE_WARMUP = 2


@dataclass
class Run:
    """One measured configuration: its per-request samples and the wall time of the whole run."""

    name: str
    concurrency: int
    samples: list[Sample]
    wall_seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.completion_tokens or 0 for s in self.samples)


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
        return Sample(
            index=index,
            latency=time.perf_counter() - started,
            text=text,
            content_times=clock.times,
            completion_tokens=len(new),  # the EOS token counts, as in the engine's usage
        )

    def run(self, name: str, *, requests: int, max_new_tokens: int) -> Run:
        for index in range(BASELINE_WARMUP):
            self.generate(index, max_new_tokens)
        started = time.perf_counter()
        samples = [self.generate(index, max_new_tokens) for index in range(requests)]
        return Run(name=name, concurrency=1, samples=samples, wall_seconds=time.perf_counter() - started)


def prepare_model(cache: Path, progress: Progress) -> Path:
    """The demo model, built once into the persistent ``cache`` (minutes on a busy 2-core box)."""
    return ensure_demo_model(cache, progress=lambda line: progress(f"engine: {line}"))


def run_engine_bench(
    *,
    workdir: Path,
    cache: Path,
    requests: int,
    concurrency: int,
    max_tokens: int,
    progress: Progress,
) -> dict[str, Any]:
    model_dir = prepare_model(cache, progress)
    baseline = Baseline(model_dir)
    progress(f"engine: baseline (transformers generate, batch 1) over {requests} requests, before")
    before = baseline.run("transformers generate (before)", requests=requests, max_new_tokens=max_tokens)
    progress(f"engine: baseline before: {before.tokens} tokens in {before.wall_seconds:.1f} s")

    home, logs = workdir / "engine-home", workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # A copy of the cached build: the server finds it current (same fingerprint) and skips training,
    # while its own database and logs stay in the throwaway home.
    shutil.copytree(model_dir, demo_model_dir(home))
    port = free_port()
    admin_key = "sk-bench-" + secrets.token_urlsafe(24)
    env = stratum_env(home, port=str(port), admin_key=admin_key, demo_model="true", embeddings_model="false")
    with running(
        [stratum_command(), "serve"],
        env=env,
        cwd=workdir,
        log_path=logs / "engine-gateway.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        name="stratum gateway (demo model)",
        progress=progress,
    ):
        served = asyncio.run(
            _serve_runs(
                url=f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"authorization": f"Bearer {admin_key}"},
                requests=requests,
                concurrencies=(1, concurrency),
                max_tokens=max_tokens,
                progress=progress,
            )
        )
    progress("engine: baseline again, after the server stopped")
    after = baseline.run("transformers generate (after)", requests=requests, max_new_tokens=max_tokens)
    progress(f"engine: baseline after: {after.tokens} tokens in {after.wall_seconds:.1f} s")
    return _report(before, after, served, max_tokens=max_tokens, parameters=baseline.model.num_parameters())


async def _serve_runs(
    *,
    url: str,
    headers: dict[str, str],
    requests: int,
    concurrencies: tuple[int, ...],
    max_tokens: int,
    progress: Progress,
) -> list[Run]:
    async def send(client: httpx.AsyncClient, index: int) -> Sample:
        body = {
            "model": DEMO_MODEL_NAME,
            "messages": [{"role": "user", "content": prompt_for(index)}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return await post_stream(client, url, body, headers, index)

    runs = []
    for concurrency in concurrencies:
        async with make_client(concurrency) as client:
            # Warm-up (excluded): one request per worker, so each connection and code path is hot.
            warm = await run_load(client, send, count=concurrency, concurrency=concurrency)
            if warm.errors:
                raise RuntimeError(f"engine warm-up failed: {warm.errors[0]}")
            result = await run_load(client, send, count=requests, concurrency=concurrency)
        run = Run(
            name=f"stratum serve, {concurrency} client{'s' if concurrency > 1 else ''}",
            concurrency=concurrency,
            samples=sorted(result.samples, key=lambda s: s.index),
            wall_seconds=result.wall_seconds,
            errors=result.errors,
        )
        progress(
            f"engine: {run.name}: {run.tokens} tokens in {run.wall_seconds:.1f} s ({len(run.errors)} errors)"
        )
        runs.append(run)
    return runs


def _summary(run: Run, *, reference: dict[int, Sample], baseline_tps: float) -> dict[str, Any]:
    ttft50, ttft99 = p50_p99([s.ttft for s in run.samples if s.ttft is not None])
    itl50, itl99 = p50_p99([gap for s in run.samples for gap in s.gaps])
    same = sum(
        1
        for s in run.samples
        if s.index in reference
        and s.completion_tokens == reference[s.index].completion_tokens
        and s.text == reference[s.index].text
    )
    tps = ratio(run.tokens, run.wall_seconds)
    return {
        "name": run.name,
        "concurrency": run.concurrency,
        "requests_ok": len(run.samples),
        "errors": len(run.errors),
        "first_errors": run.errors[:3],
        "completion_tokens": run.tokens,
        "tokens_per_request": ratio(run.tokens, len(run.samples)),
        "wall_seconds": run.wall_seconds,
        "tokens_per_s": tps,
        "ratio_to_baseline": ratio(tps, baseline_tps),
        "ttft_p50_s": ttft50,
        "ttft_p99_s": ttft99,
        "itl_p50_s": itl50,
        "itl_p99_s": itl99,
        "same_output_as_baseline": same,
    }


def _report(
    before: Run, after: Run, served: list[Run], *, max_tokens: int, parameters: int
) -> dict[str, Any]:
    # The baseline rate pools both bracketing runs; each run's own rate is kept to show the drift.
    baseline_tps = ratio(before.tokens + after.tokens, before.wall_seconds + after.wall_seconds)
    reference = {s.index: s for s in before.samples}
    rows = [_summary(run, reference=reference, baseline_tps=baseline_tps) for run in (before, after, *served)]
    return {
        "model": DEMO_MODEL_NAME,
        "parameters": parameters,
        "max_tokens": max_tokens,
        "requests_per_run": len(before.samples),
        "prompts": len(PROMPTS),
        "baseline_tokens_per_s": baseline_tps,
        "baseline_drift_after_over_before": ratio(rows[1]["tokens_per_s"], rows[0]["tokens_per_s"]),
        "runs": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### Engine: {report['model']} ({report['parameters']:,} parameters), greedy, max_tokens "
        f"{report['max_tokens']}, {report['requests_per_run']} requests per run over "
        f"{report['prompts']} prompts",
        "",
        f"Baseline = transformers generate batch 1 in-process, pooled before+after: "
        f"{report['baseline_tokens_per_s']:.1f} tok/s (after/before drift "
        f"{report['baseline_drift_after_over_before']:.2f}x).",
        "",
        "| run | ok | errors | tokens | tok/req | wall s | tok/s | vs baseline | TTFT p50 ms | TTFT p99 ms | "
        "ITL p50 ms | ITL p99 ms | same output |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['name']} | {r['requests_ok']} | {r['errors']} | {r['completion_tokens']} | "
            f"{r['tokens_per_request']:.1f} | {r['wall_seconds']:.1f} | {r['tokens_per_s']:.1f} | "
            f"{r['ratio_to_baseline']:.2f}x | {ms(r['ttft_p50_s'])} | {ms(r['ttft_p99_s'])} | "
            f"{ms(r['itl_p50_s'])} | {ms(r['itl_p99_s'])} | "
            f"{r['same_output_as_baseline']}/{r['requests_ok']} |"
        )
    return "\n".join(lines)
