"""Chat completions on the wire: shapes, usage, stop, n, streaming framing, errors."""

from __future__ import annotations

import json

from tests.gateway.conftest import Gateway


def _chat(gateway: Gateway, **body: object):  # type: ignore[no-untyped-def]
    payload = {"model": "fake", "messages": [{"role": "user", "content": "你好，世界"}], **body}
    return gateway.client.post("/v1/chat/completions", json=payload, headers=gateway.headers)


def _events(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


def test_chat_completion_shape_and_usage(gateway: Gateway) -> None:
    response = _chat(gateway)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "你好，世界",
        "tool_calls": None,
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert response.headers["x-stratum-model-version"] == "fake@1"
    assert response.headers["x-request-id"]


def test_max_tokens_gives_length_and_completion_tokens_wins(gateway: Gateway) -> None:
    body = _chat(gateway, max_tokens=2).json()
    assert body["choices"][0]["message"]["content"] == "你好"
    assert body["choices"][0]["finish_reason"] == "length"
    body = _chat(gateway, max_tokens=2, max_completion_tokens=3).json()
    assert body["choices"][0]["message"]["content"] == "你好，"


def test_stop_sequence_cuts_before_it(gateway: Gateway) -> None:
    body = _chat(gateway, stop=["，"]).json()
    assert body["choices"][0]["message"]["content"] == "你好"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_n_choices_count_prompt_once(gateway: Gateway) -> None:
    body = _chat(gateway, n=3).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] == 5
    assert body["usage"]["completion_tokens"] == 15


def test_stream_framing_with_usage(gateway: Gateway) -> None:
    response = _chat(gateway, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "你好，世界"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10
    assert len({c["id"] for c in chunks}) == 1


def test_unknown_fields_are_ignored(gateway: Gateway) -> None:
    assert _chat(gateway, some_future_field={"x": 1}, logprobs=False).status_code == 200


def test_bad_key_is_401_openai_shape(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer sk-stm-wrong"},
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "sk-stm-wrong" not in error["message"]
    missing = gateway.client.get("/v1/models")
    assert missing.status_code == 401


def test_unknown_model_is_404(gateway: Gateway) -> None:
    response = _chat(gateway, model="nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_invalid_bodies_are_400_not_500(gateway: Gateway) -> None:
    cases = [
        {"model": "fake", "messages": []},
        {"model": "fake", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "fake", "messages": [{"role": "user", "content": "x"}], "temperature": 5},
        {"model": "fake", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
        {"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "x"}]},
    ]
    for payload in cases:
        response = gateway.client.post("/v1/chat/completions", json=payload, headers=gateway.headers)
        assert response.status_code == 400, payload
        assert response.json()["error"]["type"] == "invalid_request_error"
    broken = gateway.client.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={**gateway.headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert "JSON" in broken.json()["error"]["message"]


def test_embedding_model_refused_on_chat(gateway: Gateway) -> None:
    response = _chat(gateway, model="fake-embed")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "wrong_model_kind"


def test_unknown_route_is_openai_shaped_404(gateway: Gateway) -> None:
    response = gateway.client.get("/v1/nothing", headers=gateway.headers)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_errors_name_the_version_the_plain_name_resolved_to(gateway: Gateway) -> None:
    # Raised while dispatch loads the engine, after the name resolved: the error names the version.
    wrong_kind = _chat(gateway, model="fake-embed")
    assert wrong_kind.headers["x-stratum-model-version"] == "fake-embed@1"
    assert "x-stratum-model-version" not in _chat(gateway, model="nope").headers
