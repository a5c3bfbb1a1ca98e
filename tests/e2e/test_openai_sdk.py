"""The official openai SDK (sync, async, streaming) against a running server, only base_url/api_key set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from transformers import AutoTokenizer

from tests.e2e.conftest import ADMIN_KEY, Server

MESSAGES = [
    {"role": "system", "content": "你是一个乐于助人的助手。"},
    {"role": "user", "content": "请用中文介绍一下 Stratum 平台。"},
]


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        yield sdk


def test_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"tiny", "multilingual-e5-small"} <= ids
    assert client.models.retrieve("tiny").id == "tiny"


def test_chat_usage_counted_by_model_tokenizer(client: openai.OpenAI, server: Server, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    result = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    expected_prompt = len(tokenizer.encode(rendered, add_special_tokens=False))
    assert result.usage is not None
    assert result.usage.prompt_tokens == expected_prompt
    assert result.usage.total_tokens == expected_prompt + result.usage.completion_tokens
    assert 1 <= result.usage.completion_tokens <= 8
    assert result.choices[0].finish_reason in ("stop", "length")
    if result.choices[0].finish_reason == "length":
        assert result.usage.completion_tokens == 8


def test_seed_reproducible_and_n(client: openai.OpenAI) -> None:
    def ask(seed: int) -> list[str]:
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, seed=seed, n=2)
        return [c.message.content or "" for c in r.choices]

    first = ask(7)
    assert ask(7) == first
    assert len(first) == 2
    assert ask(8) != first


def test_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    stream = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and usage.total_tokens == whole.usage.total_tokens  # type: ignore[union-attr]
    assert finish == whole.choices[0].finish_reason


def test_async_client_concurrent(server: Server) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0)

        async def one(i: int) -> str:
            r = await client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"第{i}个问题"}], max_tokens=6, seed=i
            )
            return r.choices[0].message.content or ""

        try:
            return await asyncio.gather(*[one(i) for i in range(6)])
        finally:
            await client.close()

    assert len(asyncio.run(run())) == 6


def test_completions_and_stop(client: openai.OpenAI) -> None:
    full = client.completions.create(model="tiny", prompt="从前有座山", max_tokens=16, temperature=0)
    text = full.choices[0].text
    assert full.usage is not None and full.usage.completion_tokens >= 1
    if len(text) >= 4:
        stop = text[2:4]
        cut = client.completions.create(
            model="tiny", prompt="从前有座山", max_tokens=16, temperature=0, stop=[stop]
        )
        assert stop not in cut.choices[0].text
        assert text.startswith(cut.choices[0].text)


def test_embeddings_chinese_similarity(client: openai.OpenAI) -> None:
    texts = ["如何重置密码？", "忘记密码后可以在登录页点击“忘记密码”进行重置。", "公司食堂中午十一点半开饭。"]
    floats = client.embeddings.create(model="multilingual-e5-small", input=texts, encoding_format="float")
    vectors = [d.embedding for d in floats.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    # The SDK asks for base64 by default and decodes it: same numbers.
    b64 = client.embeddings.create(model="multilingual-e5-small", input=texts)
    assert b64.data[1].embedding == pytest.approx(vectors[1], abs=1e-6)
    assert floats.usage.prompt_tokens > 0


def test_errors_map_to_sdk_exceptions(server: Server, client: openai.OpenAI) -> None:
    with (
        openai.OpenAI(base_url=server.base_url, api_key="sk-stm-not-a-key", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=3)
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "长" * 2000}])
    assert "context length" in str(too_long.value)
