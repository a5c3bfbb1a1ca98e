"""The SSE client behind `stratum chat`, with httpx.MockTransport (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from stratum.cli.chat import Conversation, default_base_url
from stratum.cli.chat_stream import ChatClient, ChatError, ChatOptions, error_message, iter_sse_data
from stratum.settings import Settings


def _sse(*payloads: object) -> bytes:
    events = [
        f"data: {json.dumps(p, ensure_ascii=False) if not isinstance(p, str) else p}\n\n" for p in payloads
    ]
    return "".join(events).encode()


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _client(handler: httpx.MockTransport) -> ChatClient:
    return ChatClient("http://test/v1", "sk-1", transport=handler)


def test_iter_sse_data_follows_the_event_stream_rules() -> None:
    lines = [
        ": comment",
        "event: message",
        "data: 一",
        "",
        "data:二",
        "data: 三",
        "",
        "id: 7",
        "",
        "data: 末",
    ]
    assert list(iter_sse_data(lines)) == ["一", "二\n三", "末"]


def test_stream_yields_chinese_deltas_and_sends_the_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = _sse(
            _delta("你好"), _delta("，世界"), {"choices": [{"delta": {}, "finish_reason": "stop"}]}, "[DONE]"
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    options = ChatOptions(model="演示", temperature=0.5, max_tokens=8)
    with _client(httpx.MockTransport(handler)) as client:
        assert list(client.stream([{"role": "user", "content": "嗨"}], options)) == ["你好", "，世界"]
        assert client.finish_reason == "stop"
    request = seen[0]
    assert request.url == "http://test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-1"
    assert json.loads(request.content) == {
        "model": "演示",
        "messages": [{"role": "user", "content": "嗨"}],
        "stream": True,
        "temperature": 0.5,
        "max_tokens": 8,
    }


def test_http_error_becomes_one_line() -> None:
    body = {
        "error": {"message": "Invalid API key.", "type": "authentication_error", "code": "invalid_api_key"}
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(401, json=body))
    with _client(transport) as client, pytest.raises(ChatError) as caught:
        list(client.stream([], ChatOptions(model="m")))
    assert caught.value.message == "Invalid API key. (invalid_api_key, HTTP 401)"
    assert caught.value.status == 401 and caught.value.fatal


def test_non_json_error_body_uses_its_first_line() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad gateway\n<html>…"))
    with _client(transport) as client, pytest.raises(ChatError, match=r"^Bad gateway \(HTTP 502\)$"):
        list(client.stream([], ChatOptions(model="m")))


def test_connection_refused_says_how_to_start_the_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(httpx.MockTransport(handler)) as client, pytest.raises(ChatError) as caught:
        list(client.stream([], ChatOptions(model="m")))
    assert "isn't reachable at http://test/v1" in caught.value.message
    assert "stratum serve" in caught.value.message


def test_garbage_in_the_stream_is_an_error() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=b"data: {not json\n\n", headers={"content-type": "text/event-stream"}
        )
    )
    with _client(transport) as client, pytest.raises(ChatError, match="not JSON"):
        list(client.stream([], ChatOptions(model="m")))


def test_error_message_shapes() -> None:
    assert error_message({"error": "boom"}, status=500) == "boom (HTTP 500)"
    assert error_message({"detail": "Not Found"}, status=404) == "Not Found (HTTP 404)"
    assert error_message(None, fallback="nope") == "nope"


def test_non_ascii_api_key_is_refused_up_front() -> None:
    with pytest.raises(ChatError, match="non-ASCII"):
        ChatClient("http://test/v1", "密钥")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123/v1"),
        ("0.0.0.0", "http://127.0.0.1:8123/v1"),
        ("::", "http://[::1]:8123/v1"),
        ("fe80::1", "http://[fe80::1]:8123/v1"),
    ],
)
def test_default_base_url(host: str, url: str) -> None:
    assert default_base_url(Settings(host=host, port=8123)) == url


class _InterruptedClient:
    """Yields one delta, then behaves as if the user pressed Ctrl-C."""

    base_url = "http://test/v1"
    finish_reason: str | None = None

    def stream(self, messages: object, options: object) -> Iterator[str]:
        yield "半句"
        raise KeyboardInterrupt


def test_ctrl_c_keeps_the_partial_reply_in_the_history(capsys: pytest.CaptureFixture[str]) -> None:
    conversation = Conversation(system="你是助手")
    reply = conversation.ask(_InterruptedClient(), ChatOptions(model="m"), "讲个故事")  # type: ignore[arg-type]
    assert reply == "半句" and conversation.interrupted
    assert conversation.messages == [
        {"role": "system", "content": "你是助手"},
        {"role": "user", "content": "讲个故事"},
        {"role": "assistant", "content": "半句"},
    ]
    captured = capsys.readouterr()
    assert captured.out == "半句\n"
    assert "[reply stopped]" in captured.err


def test_a_failed_turn_leaves_the_history_unchanged() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": {"message": "too long"}})
    )
    conversation = Conversation(system=None)
    with _client(transport) as client, pytest.raises(ChatError, match="too long"):
        conversation.ask(client, ChatOptions(model="m"), "问题")
    assert conversation.messages == []
