"""The embedded engine on a tiny random Llama: determinism, limits, stops, cancellation, concurrency,
and continuous batching (greedy batched == unbatched, chunked prefill, KV budget, deadlines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stratum.engine.base import GenerationChunk, GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.engine.prompting import PromptBuilder
from stratum.errors import EngineError, InvalidRequest, Overloaded
from tests.tiny import build_tiny_llama

# Greedy decoding of this prompt on the seed-0 tiny model runs to the token limit (checked below).
LONG = "写一篇很长的文章"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """On a shared two-core box a second OpenMP thread mostly waits for a busy core: with models
    this small it made these tests ~20x slower, and says nothing about the engine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture
async def engine(model_dir: Path) -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(model_dir, max_batch=4, max_queue=4)
    await engine.start()
    yield engine
    await engine.close()


def _request(
    content: str = "你好，Stratum", deadline_s: float | None = None, **params: object
) -> GenerationRequest:
    return GenerationRequest(
        request_id="t",
        params=SamplingParams(**params),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": content}],
        deadline_s=deadline_s,
    )


async def _run(engine: LocalEngine, request: GenerationRequest) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.generate(request)]


async def test_info_and_prompt_count(engine: LocalEngine) -> None:
    assert engine.info.architecture == "LlamaForCausalLM"
    assert engine.info.context_length == 256
    count = engine.count_prompt_tokens(_request())
    assert count is not None and count > 5


async def test_same_seed_same_output_and_usage(engine: LocalEngine) -> None:
    a = await _run(engine, _request(max_tokens=12, temperature=1.0, seed=42))
    b = await _run(engine, _request(max_tokens=12, temperature=1.0, seed=42))
    c = await _run(engine, _request(max_tokens=12, temperature=1.0, seed=43))
    text = ["".join(x.text for x in run) for run in (a, b, c)]
    assert text[0] == text[1]
    assert text[0] != text[2]
    final = a[-1]
    assert final.finish_reason in ("stop", "length")
    assert final.prompt_tokens == engine.count_prompt_tokens(_request())
    if final.finish_reason == "length":
        assert final.completion_tokens == 12


async def test_greedy_concurrent_equals_sequential(engine: LocalEngine) -> None:
    prompts = ["今天天气怎么样？", "What is Stratum?", "写一首诗", "hi"]
    alone = [
        "".join(c.text for c in await _run(engine, _request(p, max_tokens=10, temperature=0)))
        for p in prompts
    ]
    together = await asyncio.gather(
        *[_run(engine, _request(p, max_tokens=10, temperature=0)) for p in prompts]
    )
    assert ["".join(c.text for c in run) for run in together] == alone


async def test_stop_string_is_never_emitted(engine: LocalEngine) -> None:
    full = "".join(c.text for c in await _run(engine, _request(max_tokens=30, temperature=0)))
    assert len(full) > 4
    stop = full[3:5]
    chunks = await _run(engine, _request(max_tokens=30, temperature=0, stop=(stop,)))
    text = "".join(c.text for c in chunks)
    assert stop not in text
    assert full.startswith(text)
    assert chunks[-1].finish_reason == "stop"


async def test_context_limits_are_client_errors(engine: LocalEngine) -> None:
    with pytest.raises(InvalidRequest) as too_long:
        engine.generate(_request("长" * 400))
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        engine.generate(_request(max_tokens=10_000))


async def test_cancel_frees_slot(engine: LocalEngine) -> None:
    stream = engine.generate(_request(max_tokens=200, temperature=1.0, seed=1))
    await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(100):
        if engine.running == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.running == 0
    assert engine.kv_tokens_reserved == 0  # its KV memory went with it


async def test_bounded_queue_rejects_with_overloaded(model_dir: Path) -> None:
    engine = LocalEngine(model_dir, max_batch=1, max_queue=1)
    await engine.start()
    try:
        streams = []
        with pytest.raises(Overloaded):
            for _ in range(10):
                streams.append(engine.generate(_request(max_tokens=50, temperature=1.0)))
        assert len(streams) >= 1
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await engine.close()


# -- continuous batching -------------------------------------------------------------------------


def _text(chunks: list[GenerationChunk]) -> str:
    return "".join(c.text for c in chunks)


def _transformers_greedy(model_dir: Path, content: str, max_tokens: int) -> tuple[str, float]:
    """Unbatched reference from transformers itself: greedy text, and the smallest gap between the
    two best logits along the way (how close greedy came to a tie)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = PromptBuilder(tokenizer)
    ids = prompts.chat([{"role": "user", "content": content}])
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    gaps = [float(top[0] - top[1]) for step in out.logits for top in [step[0].topk(2).values]]
    new = out.sequences[0, len(ids) :].tolist()
    return prompts.decode([t for t in new if t != tokenizer.eos_token_id]), min(gaps)


async def test_greedy_batched_equals_unbatched_with_staggered_arrivals(model_dir: Path) -> None:
    """Mixed Chinese/English prompts (some longer than a prefill chunk), stop strings and token
    limits; half the requests arrive while the other half is mid-generation; seeded sampled
    requests ride along. Everything must match transformers' unbatched greedy output."""
    cases: list[tuple[str, int]] = [
        ("今天天气怎么样？", 12),
        ("What is Stratum? Explain the gateway, the registry and the engine in detail.", 25),
        ("写一首诗", 40),
        ("hi", 5),
        ("Stratum 的数据存在哪里？请详细说明如何修改端口以及如何查看日志。" * 2, 30),
        ("How do I add a model?", 40),
    ]
    expected: list[str] = []
    for content, max_tokens in cases:
        text, gap = _transformers_greedy(model_dir, content, max_tokens)
        # Batching moves each logit by at most 1e-4 (test_batching.DRIFT_BOUND), so the top two
        # can swap only if they are closer than 2e-4: then equality would be luck, not a test.
        assert gap > 2e-4, f"{content!r} comes within {gap} of a tie: pick another prompt"
        expected.append(text)
    # Stop strings cut the text before their first occurrence (found in the reference output).
    stops = [expected[2][5:7], expected[5][3:4]]
    requests = [_request(c, max_tokens=n, temperature=0) for c, n in cases] + [
        _request(cases[2][0], max_tokens=40, temperature=0, stop=(stops[0],)),
        _request(cases[5][0], max_tokens=40, temperature=0, stop=(stops[1], "never appears")),
    ]
    expected += [
        expected[2][: expected[2].index(stops[0])],
        expected[5][: expected[5].index(stops[1])],
    ]
    sampled = [_request("你好", max_tokens=20, temperature=0.9, top_p=0.9, seed=s) for s in (7, 8)]

    engine = LocalEngine(model_dir, max_batch=8, max_queue=8, prefill_chunk=16)
    await engine.start()
    try:
        sampled_alone = [_text(await _run(engine, r)) for r in sampled]
        first, second = requests[::2] + sampled[:1], requests[1::2] + sampled[1:]
        started = [asyncio.Event() for _ in first]

        async def consume(request: GenerationRequest, event: asyncio.Event | None) -> str:
            parts = []
            async for chunk in engine.generate(request):
                parts.append(chunk.text)
                if event is not None:
                    event.set()
            return "".join(parts)

        early = [asyncio.create_task(consume(r, e)) for r, e in zip(first, started, strict=True)]
        await asyncio.gather(*(e.wait() for e in started))
        late = await asyncio.gather(*(consume(r, None) for r in second))
        texts = await asyncio.gather(*early)
    finally:
        await engine.close()
    got = dict(zip(map(id, first), texts, strict=True)) | dict(zip(map(id, second), late, strict=True))
    assert [got[id(r)] for r in requests] == expected
    assert [got[id(r)] for r in sampled] == sampled_alone


async def test_prefill_is_chunked_so_running_streams_keep_flowing(model_dir: Path) -> None:
    engine = LocalEngine(model_dir, max_batch=4, max_queue=4, prefill_chunk=8)
    await engine.start()
    try:
        running = engine.generate(_request(LONG, max_tokens=150, temperature=0))
        progress = [0]
        finish: list[str | None] = []

        async def follow() -> None:
            async for chunk in running:
                progress[0] = chunk.completion_tokens
                finish.append(chunk.finish_reason)

        follower = asyncio.create_task(follow())
        while progress[0] < 5:
            await asyncio.sleep(0.001)
        newcomer = _request("Stratum 的数据存在哪里？请详细说明如何修改端口以及如何查看日志。" * 3)
        prompt_tokens = engine.count_prompt_tokens(newcomer)
        assert prompt_tokens is not None and prompt_tokens > 80
        before = progress[0]
        stream = engine.generate(newcomer)
        await stream.__anext__()
        # The newcomer's prompt took ceil(tokens / 8) rounds, each also decoding the running stream.
        assert progress[0] - before >= prompt_tokens // 8 - 3
        await stream.aclose()  # type: ignore[attr-defined]
        await follower
        assert finish[-1] == "length"  # the precondition: LONG really runs to the limit
    finally:
        await engine.close()


async def test_kv_budget_makes_requests_wait_and_limits_their_size(model_dir: Path) -> None:
    tokens = len(
        PromptBuilder(AutoTokenizer.from_pretrained(model_dir)).chat([{"role": "user", "content": LONG}])
    )
    budget = tokens + 60  # room for one such request with max_tokens=60, not two
    engine = LocalEngine(model_dir, max_batch=4, max_queue=4, max_kv_tokens=budget)
    await engine.start()
    try:
        with pytest.raises(InvalidRequest) as too_big:
            engine.generate(_request(LONG, max_tokens=61, temperature=0))
        assert too_big.value.code == "context_length_exceeded"
        first = engine.generate(_request(LONG, max_tokens=60, temperature=0))
        second = engine.generate(_request(LONG, max_tokens=60, temperature=0))
        await first.__anext__()
        assert (engine.running, engine.queue_depth, engine.kv_tokens_reserved) == (1, 1, budget)
        a = [c async for c in first]
        b = [c async for c in second]
        assert a[-1].finish_reason == b[-1].finish_reason == "length"
        # Without max_tokens a request gets what the budget leaves after its prompt.
        rest = await _run(engine, _request(LONG, temperature=0))
        assert rest[-1].completion_tokens == 60
        assert engine.kv_tokens_reserved == 0
    finally:
        await engine.close()


async def test_deadline_ends_running_and_waiting_requests(model_dir: Path) -> None:
    engine = LocalEngine(model_dir, max_batch=1, max_queue=4)
    await engine.start()
    try:
        # ~230 tokens take far longer than 0.1 s, even on a quiet machine.
        running = engine.generate(_request(LONG, temperature=0, deadline_s=0.1))
        waiting = engine.generate(_request(LONG, max_tokens=5, temperature=0, deadline_s=0.05))
        for stream in (waiting, running):
            with pytest.raises(EngineError) as timed_out:
                async for _ in stream:
                    pass
            assert timed_out.value.code == "timeout"
        assert (engine.running, engine.queue_depth, engine.kv_tokens_reserved) == (0, 0, 0)
    finally:
        await engine.close()
