"""The embedded engine on a tiny random Llama: determinism, limits, stops, cancellation, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.engine.base import GenerationChunk, GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.errors import InvalidRequest, Overloaded
from tests.tiny import build_tiny_llama


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture
async def engine(model_dir: Path) -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(model_dir, max_batch=4, max_queue=4)
    await engine.start()
    yield engine
    await engine.close()


def _request(content: str = "你好，Stratum", **params: object) -> GenerationRequest:
    return GenerationRequest(
        request_id="t",
        params=SamplingParams(**params),
        messages=[{"role": "user", "content": content}],  # type: ignore[arg-type]
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
