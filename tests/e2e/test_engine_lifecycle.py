"""A real engine behind a real server: disconnects free the slot; a full queue answers 503."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, start_server, stop_server
from tests.tiny import build_tiny_llama

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}
# Greedy decoding of this prompt on the seed-0 tiny model runs to the token limit (checked below).
LONG = {
    "model": "long",
    "messages": [{"role": "user", "content": "写一篇很长的文章"}],
    "max_tokens": 1500,
    "temperature": 0,
    "stream": True,
}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = build_tiny_llama(tmp_path_factory.mktemp("long-model") / "llama", context_length=2048)
    home = tmp_path_factory.mktemp("lifecycle-home")
    running = start_server(
        home,
        extra_env={"STRATUM_MAX_BATCH": "1", "STRATUM_MAX_QUEUE": "1", "STRATUM_EMBEDDINGS_MODEL": "false"},
    )
    running.cli("models", "add", "long", "--path", str(model))
    yield running
    stop_server(running)


def _gauge(server: Server, name: str) -> float:
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    match = re.search(rf'^{name}\{{model="long"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_for(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_disconnect_cancels_generation(small_server: Server) -> None:
    with httpx.Client(timeout=60) as client:
        with client.stream(
            "POST", f"{small_server.base_url}/chat/completions", json=LONG, headers=AUTH
        ) as response:
            assert response.status_code == 200
            events = response.iter_lines()
            for _ in range(6):
                next(events)
            assert _gauge(small_server, "stratum_engine_running") == 1
        # The client is gone: the engine must drop the sequence long before its 1500 tokens.
        assert _wait_for(lambda: _gauge(small_server, "stratum_engine_running") == 0, 5)
        metrics = client.get(small_server.base_url.removesuffix("/v1") + "/metrics").text
        assert 'stratum_requests_total{endpoint="chat",model="long",status="499"} 1.0' in metrics


def test_full_queue_is_503_with_retry_after(small_server: Server) -> None:
    with httpx.Client(timeout=60) as client:
        url = f"{small_server.base_url}/chat/completions"
        with client.stream("POST", url, json=LONG, headers=AUTH) as first:
            # Keep the line iterator referenced: a collected iterator closes the response (a disconnect).
            first_lines = first.iter_lines()
            next(first_lines)
            with client.stream("POST", url, json=LONG, headers=AUTH) as second:
                assert second.status_code == 200  # admitted to the one queue place
                third = client.post(url, json=LONG, headers=AUTH)
                assert third.status_code == 503
                assert third.headers["retry-after"] == "1"
                assert third.json()["error"]["type"] == "overloaded_error"
        assert _wait_for(lambda: _gauge(small_server, "stratum_engine_running") == 0, 5)
    # The slot is free again: a short request goes straight through.
    done = httpx.post(url, json={**LONG, "stream": False, "max_tokens": 3}, headers=AUTH, timeout=60)
    assert done.status_code == 200, done.text
    assert done.json()["choices"][0]["finish_reason"] == "length", done.text


def test_long_prompt_precondition(small_server: Server, tmp_path: Path) -> None:
    """Guards the tests above: greedy decoding of LONG really runs to max_tokens."""
    body = {**LONG, "stream": False, "max_tokens": 300}
    result = httpx.post(
        f"{small_server.base_url}/chat/completions", json=body, headers=AUTH, timeout=120
    ).json()
    assert result["choices"][0]["finish_reason"] == "length"


def test_shared_system_prompt_is_reused_and_counted(small_server: Server) -> None:
    """A user's view of prefix reuse: two chats with the same long system prompt through the SDK;
    the second reuses the first's prompt KV (Prometheus counters say so) and answers normally."""
    from openai import OpenAI

    client = OpenAI(base_url=small_server.base_url, api_key=ADMIN_KEY, timeout=60, max_retries=0)
    system = "你是 Stratum 的客服助手，请用简洁、礼貌的中文回答关于部署、模型、日志和端口的问题。" * 2
    hits_before = _gauge(small_server, "stratum_engine_prefix_cache_hits")
    answers = []
    for question in ("怎么查看日志？", "How do I change the port?"):
        answer = client.chat.completions.create(
            model="long",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=5,
            temperature=0,
        )
        assert answer.choices[0].finish_reason in ("stop", "length")
        answers.append(answer)
    assert _gauge(small_server, "stratum_engine_prefix_cache_hits") == hits_before + 1
    assert _gauge(small_server, "stratum_engine_prefix_cache_tokens_reused") >= 32
    assert _gauge(small_server, "stratum_engine_prefix_cache_tokens") >= 32
