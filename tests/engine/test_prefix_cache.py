"""Prefix reuse: prompts sharing a head (a system prompt) reuse its KV blocks, per model and adapter,
within the KV budget, and greedy output is the same with reuse as without."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.kv import KVShape, SequenceKV
from stratum.engine.local import LocalEngine
from stratum.engine.prefix_cache import BLOCK_TOKENS, PrefixCache, block_keys
from tests.tiny import build_tiny_llama, build_tiny_lora

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

SYSTEM = "你是 Stratum 的客服助手。请用简洁、礼貌的中文回答用户关于部署、模型和日志的问题。Be brief."
QUESTIONS = [
    "hi",
    "今天天气怎么样？",
    "What is Stratum? Explain the gateway and the registry.",
    "写一首诗",
    "Stratum 的数据存在哪里？请详细说明如何修改端口以及如何查看日志。",
]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("prefix")
    base = build_tiny_llama(root / "base")
    adapters = {
        "a": build_tiny_lora(base, root / "a", seed=1),
        "b": build_tiny_lora(base, root / "b", seed=2, rank=8, modules=("q_proj", "k_proj", "v_proj")),
    }
    return base, adapters


def _request(question: str, adapter: str | None = None, max_tokens: int = 10) -> GenerationRequest:
    return GenerationRequest(
        request_id=question,
        params=SamplingParams(temperature=0, max_tokens=max_tokens),
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        adapter=adapter,
    )


async def _text(engine: LocalEngine, request: GenerationRequest) -> str:
    return "".join([chunk.text async for chunk in engine.generate(request)])


async def _engine(dirs: tuple[Path, dict[str, Path]], **kwargs: object) -> LocalEngine:
    engine = LocalEngine(dirs[0], max_batch=16, max_queue=32, **kwargs)  # type: ignore[arg-type]
    await engine.start()
    for name, path in dirs[1].items():
        await engine.load_adapter(name, path)
    return engine


# -- the cache itself --------------------------------------------------------------------------


def test_block_keys_chain_the_whole_prefix_and_the_adapter() -> None:
    prompt = list(range(3 * BLOCK_TOKENS + 5))
    keys = block_keys(None, prompt)
    assert len(keys) == 3  # full blocks only
    assert block_keys(None, prompt[: 2 * BLOCK_TOKENS]) == keys[:2]
    other_head = [7, *prompt[1:]]
    # Same second block, different first block: the second key differs too (keys name prefixes).
    assert block_keys(None, other_head)[1] != keys[1]
    assert set(block_keys("a", prompt)).isdisjoint(keys)
    assert set(block_keys("a", prompt)).isdisjoint(block_keys("b", prompt))


class _Config:
    num_hidden_layers = 2
    num_attention_heads = 2
    num_key_value_heads = 1
    hidden_size = 8


def _filled(tokens: int) -> SequenceKV:
    kv = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=tokens, max_tokens=tokens + 8)
    kv.reserve(tokens)
    for layer in range(2):
        values = torch.arange(tokens, dtype=torch.float32).repeat(1, 4, 1).transpose(1, 2)
        kv.write(layer, values, -values)
    kv.commit(tokens)
    return kv


def test_reuse_copies_the_longest_cached_head_and_leaves_a_token_to_prefill() -> None:
    cache = PrefixCache(max_tokens=10 * BLOCK_TOKENS)
    prompt = list(range(2 * BLOCK_TOKENS))
    keys = cache.keys(None, prompt)
    cache.insert(None, keys, _filled(len(prompt)), room=None)
    assert cache.tokens == 2 * BLOCK_TOKENS
    # The same prompt again: only the first block is reused, the last token must still be prefilled.
    fresh = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=len(prompt), max_tokens=64)
    assert cache.reuse(keys, len(prompt), fresh) == BLOCK_TOKENS
    assert fresh.length == BLOCK_TOKENS
    keys_now, _ = fresh.write(0, torch.zeros(1, 0, 4), torch.zeros(1, 0, 4))
    assert torch.equal(keys_now[0, :, 0], torch.arange(BLOCK_TOKENS, dtype=torch.float32))
    # A longer prompt with the same head reuses both blocks; another adapter reuses nothing.
    longer = [*prompt, 999]
    fresh = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=len(longer), max_tokens=64)
    assert cache.reuse(cache.keys(None, longer), len(longer), fresh) == 2 * BLOCK_TOKENS
    fresh = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=len(longer), max_tokens=64)
    assert cache.reuse(cache.keys("a", longer), len(longer), fresh) == 0
    assert (cache.stats.lookups, cache.stats.hits, cache.stats.tokens_reused) == (3, 2, 3 * BLOCK_TOKENS)


def test_lru_evicts_tails_before_shared_heads_and_respects_room() -> None:
    cache = PrefixCache(max_tokens=3 * BLOCK_TOKENS)
    head = list(range(BLOCK_TOKENS))
    first = [*head, *range(100, 100 + BLOCK_TOKENS)]
    second = [*head, *range(200, 200 + BLOCK_TOKENS)]
    cache.insert(None, cache.keys(None, first), _filled(len(first)), room=None)
    cache.insert(None, cache.keys(None, second), _filled(len(second)), room=None)
    assert cache.tokens == 3 * BLOCK_TOKENS  # the head is stored once
    cache.trim(2 * BLOCK_TOKENS)
    probe = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=40, max_tokens=64)
    # first's tail went (least recently used); the shared head stayed.
    assert cache.reuse(cache.keys(None, [*first, 1]), len(first) + 1, probe) == BLOCK_TOKENS
    probe = SequenceKV(KVShape(_Config(), torch.float32), prompt_tokens=40, max_tokens=64)
    assert cache.reuse(cache.keys(None, [*second, 1]), len(second) + 1, probe) == 2 * BLOCK_TOKENS
    # An insert never leaves the cache above the room it is given.
    cache.insert(None, cache.keys(None, first), _filled(len(first)), room=BLOCK_TOKENS)
    assert cache.tokens == BLOCK_TOKENS
    cache.drop_adapter("a")
    assert cache.tokens == BLOCK_TOKENS
    cache.insert("a", cache.keys("a", first), _filled(len(first)), room=None)
    cache.drop_adapter("a")
    assert cache.tokens == BLOCK_TOKENS


# -- in the engine -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_greedy_output_is_the_same_with_and_without_reuse(dirs: tuple[Path, dict[str, Path]]) -> None:
    """Mixed prompt lengths sharing a system prompt, base and two adapters, small prefill chunks;
    run one at a time and all at once: the reusing engine answers exactly as the plain one."""
    requests = [
        _request(q, adapter, max_tokens=6 + 3 * (i % 3))
        for i, q in enumerate(QUESTIONS)
        for adapter in (None, "a", "b")
    ]
    plain = await _engine(dirs, prefill_chunk=12)
    try:
        expected = [await _text(plain, r) for r in requests]
        assert plain.prefix_stats is None and plain.prefix_cache_tokens == 0
    finally:
        await plain.close()
    assert len(set(expected)) > 3  # adapters and prompts do change the answers

    reusing = await _engine(dirs, prefill_chunk=12, prefix_cache_tokens=4096)
    try:
        alone = [await _text(reusing, r) for r in requests]
        stats = reusing.prefix_stats
        assert stats is not None
        # Per adapter, the first request fills the cache and the other four reuse the system prompt.
        assert stats.hits == 3 * (len(QUESTIONS) - 1)
        system_tokens = reusing.count_prompt_tokens(_request(""))
        assert system_tokens is not None and system_tokens > 2 * BLOCK_TOKENS
        assert stats.tokens_reused >= stats.hits * 2 * BLOCK_TOKENS
        together = await asyncio.gather(*[_text(reusing, r) for r in requests])
        assert stats.hits == 3 * (len(QUESTIONS) - 1) + len(requests)
    finally:
        await reusing.close()
    assert alone == expected
    assert together == expected


async def test_adapter_blocks_are_never_shared_and_reloads_drop_them(
    dirs: tuple[Path, dict[str, Path]],
) -> None:
    engine = await _engine(dirs, prefix_cache_tokens=4096)
    try:
        stats = engine.prefix_stats
        assert stats is not None
        first = await _text(engine, _request(QUESTIONS[1]))
        assert (stats.hits, stats.tokens_reused) == (0, 0)
        await _text(engine, _request(QUESTIONS[1], "a"))  # same prompt, other adapter: a miss
        assert stats.hits == 0
        assert await _text(engine, _request(QUESTIONS[1])) == first
        assert stats.hits == 1
        await _text(engine, _request(QUESTIONS[2], "a"))
        assert stats.hits == 2
        # Reloading "a" (possibly other weights under the same name) forgets its blocks.
        cached = engine.prefix_cache_tokens
        await engine.load_adapter("a", dirs[1]["b"])
        assert engine.prefix_cache_tokens < cached
        await _text(engine, _request(QUESTIONS[3], "a"))
        assert stats.hits == 2
    finally:
        await engine.close()


async def test_cache_shares_the_kv_budget_and_gives_way(dirs: tuple[Path, dict[str, Path]]) -> None:
    budget = 240
    engine = await _engine(dirs, prefix_cache_tokens=4096, max_kv_tokens=budget)
    try:
        prompt_tokens = engine.count_prompt_tokens(_request(QUESTIONS[1]))
        assert prompt_tokens is not None and 2 * BLOCK_TOKENS < prompt_tokens < budget // 2
        await _text(engine, _request(QUESTIONS[1], max_tokens=4))
        cached = engine.prefix_cache_tokens
        # Inserted while the request itself still held its reservation: what the budget left.
        assert 0 < cached <= min(prompt_tokens // BLOCK_TOKENS * BLOCK_TOKENS, budget - prompt_tokens - 4)
        # A request that needs nearly all the budget: the cache gives way instead of it waiting.
        short = engine.count_prompt_tokens(_request(QUESTIONS[0]))
        assert short is not None
        stream = engine.generate(_request(QUESTIONS[0], max_tokens=budget - 1 - short))
        await stream.__anext__()
        assert engine.kv_tokens_reserved == budget - 1
        assert engine.prefix_cache_tokens == 0
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await engine.close()
