"""The upstream engine against httpx's mock transport: streaming, retries, errors, credentials."""

from __future__ import annotations

import json

import httpx
import pytest

from stratum.engine.base import GenerationChunk, GenerationRequest, SamplingParams
from stratum.engine.upstream import UpstreamEngine
from stratum.errors import InvalidRequest, RateLimited, UpstreamError


def _sse(*events: dict | str) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
    return "".join(lines).encode()


def _delta(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


GOOD = _sse(
    _delta("你好"),
    _delta("，世界"),
    _delta("", "stop"),
    {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
    "[DONE]",
)


def _request(**params: object) -> GenerationRequest:
    return GenerationRequest(
        request_id="r",
        params=SamplingParams(**params),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "你好"}],
        passthrough={"tools": [{"type": "function", "function": {"name": "f"}}]},
    )


async def _collect(engine: UpstreamEngine, request: GenerationRequest) -> list[GenerationChunk]:
    try:
        return [c async for c in engine.generate(request)]
    finally:
        await engine.close()


async def test_streams_text_and_upstream_usage() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=GOOD, headers={"content-type": "text/event-stream"})

    engine = UpstreamEngine("http://up/v1", model="big", transport=httpx.MockTransport(handler))
    chunks = await _collect(engine, _request(max_tokens=5, temperature=0.2, stop=("。",), seed=3))
    assert "".join(c.text for c in chunks) == "你好，世界"
    assert chunks[-1].finish_reason == "stop"
    assert (chunks[-1].prompt_tokens, chunks[-1].completion_tokens) == (7, 3)
    body = json.loads(seen[0].content)
    assert seen[0].url == "http://up/v1/chat/completions"
    assert body["model"] == "big" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 5 and body["stop"] == ["。"] and body["seed"] == 3
    assert body["tools"][0]["function"]["name"] == "f"


async def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "sk-upstream")
    auth: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth.append(request.headers.get("authorization"))
        return httpx.Response(200, content=GOOD)

    engine = UpstreamEngine(
        "http://up/v1", model="m", api_key_env="UPSTREAM_TEST_KEY", transport=httpx.MockTransport(handler)
    )
    await _collect(engine, _request())
    assert auth == ["Bearer sk-upstream"]
    monkeypatch.delenv("UPSTREAM_TEST_KEY")
    with pytest.raises(UpstreamError, match="UPSTREAM_TEST_KEY"):
        await _collect(engine, _request())


async def test_retries_5xx_and_429_before_the_first_byte() -> None:
    statuses = iter([503, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return httpx.Response(status, content=GOOD if status == 200 else b'{"error": {"message": "busy"}}')

    engine = UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler))
    chunks = await _collect(engine, _request())
    assert "".join(c.text for c in chunks) == "你好，世界"


async def test_gives_up_after_retries_with_the_last_error() -> None:
    engine = UpstreamEngine(
        "http://up/v1", model="m", transport=httpx.MockTransport(lambda r: httpx.Response(429, json={}))
    )
    with pytest.raises(RateLimited):
        await _collect(engine, _request())


@pytest.mark.parametrize(
    ("status", "error"), [(400, InvalidRequest), (401, UpstreamError), (404, InvalidRequest)]
)
async def test_client_errors_are_not_retried(status: int, error: type[Exception]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "模型不存在"}})

    engine = UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler))
    with pytest.raises(error, match="模型不存在"):
        await _collect(engine, _request())
    assert len(calls) == 1


async def test_stream_cut_midway_is_an_error_not_a_short_answer() -> None:
    cut = _sse(_delta("你好"))  # no finish reason, no [DONE]
    engine = UpstreamEngine(
        "http://up/v1", model="m", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=cut))
    )
    with pytest.raises(UpstreamError) as info:
        await _collect(engine, _request())
    assert info.value.code == "upstream_stream_cut"


async def test_error_event_mid_stream() -> None:
    body = _sse(_delta("半"), {"error": {"message": "oom"}})
    engine = UpstreamEngine(
        "http://up/v1", model="m", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    )
    with pytest.raises(UpstreamError, match="oom"):
        await _collect(engine, _request())


async def test_completions_and_tool_calls_pass_through() -> None:
    tool_delta = {"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": '{"city":'}}
    body = _sse(
        {"choices": [{"index": 0, "delta": {"tool_calls": [tool_delta]}, "finish_reason": None}]},
        _delta("", "tool_calls"),
        "[DONE]",
    )
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, content=body)

    engine = UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler))
    chunks = await _collect(engine, _request())
    assert chunks[0].tool_calls == (tool_delta,)
    assert chunks[-1].finish_reason == "tool_calls"
    # Without upstream usage, each content event counts as one token.
    assert chunks[-1].completion_tokens == 1
    engine = UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler))
    text_request = GenerationRequest(request_id="c", params=SamplingParams(), prompt="从前")
    await _collect(engine, text_request)
    assert paths[-1] == "/v1/completions"
