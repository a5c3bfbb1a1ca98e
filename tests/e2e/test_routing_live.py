"""Routing as users meet it: the openai SDK against real servers, the CLI in subprocesses.

- fallback chain: a dead upstream → the rule responder → a person (ticket answered with
  ``stratum queue answer``, fetched by id), and the dead upstream's circuit opening;
- burst: a tiny local engine saturated past its burst threshold sends requests to a mock upstream
  (a separate process), and a request after the load is local again;
- cache: a repeated temperature-0 request is a hit.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, free_port, start_server, stop_server

MOCK_UPSTREAM = Path(__file__).resolve().parents[2] / "benchmarks" / "mock_upstream.py"
REFUND_ANSWER = "退款请在“我的订单”页面点击“申请退款”，1-3 个工作日到账。"


@pytest.fixture(scope="module")
def routing_server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    """One server for the module: each test routes a model of its own (support, tiny, assistant)."""
    home = tmp_path_factory.mktemp("routing")
    dead = free_port()  # nothing listens here: every call is a connect error
    server = start_server(
        home,
        extra_env={
            "STRATUM_EMBEDDINGS_MODEL": "false",
            "STRATUM_UPSTREAM_RETRIES": "0",
            "STRATUM_CIRCUIT_FAILURES": "2",
            "STRATUM_HEALTH_INTERVAL": "0",
            # For the burst test: one sequence at a time, so the local queue fills fast. The cache
            # stays on for the cache test; the burst test samples (temperature > 0): never cached.
            "STRATUM_MAX_BATCH": "1",
            "STRATUM_MAX_QUEUE": "4",
        },
    )
    try:
        server.cli("models", "add", "tiny", "--path", str(tiny_model_dir))
        server.cli("models", "add", "dead-cloud", "--upstream", f"http://127.0.0.1:{dead}/v1")
        yield server
    finally:
        stop_server(server)


@pytest.mark.slow
def test_fallback_to_rules_then_to_a_person_through_the_sdk(routing_server: Server) -> None:
    server = routing_server
    server.cli(
        "routes", "set", "support", "--backend", "dead-cloud",
        "--fallback", "rules", "--fallback", "human",
    )  # fmt: skip
    server.cli(
        "rules", "set", "refund", "--keyword", "退款", "--keyword", "refund", "--template", REFUND_ANSWER
    )
    listed = json.loads(server.cli("routes", "list", "--json").stdout)
    assert [r["model"] for r in listed] == ["support"]
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        _fallback_flow(server, sdk)


def _fallback_flow(server: Server, sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "我买的耳机想退款怎么办？"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == REFUND_ANSWER
    assert raw.headers["x-stratum-fallback"] == "rules"
    assert completion.model_extra["stratum"]["fallback"] == "rules"

    # Streaming through the SDK: the same answer, in pieces.
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in sdk.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "refund please"}], stream=True
        )
        if chunk.choices
    ]
    assert "".join(pieces) == REFUND_ANSWER and len(pieces) > 1

    # No rule matches: handed to a person, with a ticket id in the answer and the headers.
    raw = sdk.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "我要投诉你们的配送员，请转人工"}]
    )
    ticket = raw.headers["x-stratum-ticket"]
    handed = raw.parse()
    assert raw.headers["x-stratum-fallback"] == "human"
    assert ticket in (handed.choices[0].message.content or "")
    assert handed.model_extra["stratum"]["ticket_id"] == ticket

    queue = json.loads(server.cli("queue", "list", "--json").stdout)
    assert [(t["id"], t["question"]) for t in queue] == [(ticket, "我要投诉你们的配送员，请转人工")]
    server.cli("queue", "answer", ticket, "非常抱歉，我们已联系配送站处理。")
    fetched = httpx.get(
        f"{server.base_url}/tickets/{ticket}", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    ).json()
    assert fetched["status"] == "answered" and fetched["answer"] == "非常抱歉，我们已联系配送站处理。"
    assert json.loads(server.cli("queue", "list", "--json").stdout) == []
    again = server.cli("queue", "answer", ticket, "again", check=False)
    assert again.returncode != 0 and again.stderr.startswith("error:") and "Traceback" not in again.stderr

    # The dead upstream failed on every request: its circuit is open now.
    backends = httpx.get(
        f"http://127.0.0.1:{server.port}/admin/v1/backends",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    ).json()
    assert {"backend": "dead-cloud@1", "circuit": "open", "consecutive_failures": 2} in backends
    metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    assert 'stratum_fallbacks_total{link="rules",model="support"} 2.0' in metrics


@pytest.mark.slow
def test_a_repeated_temperature_zero_request_is_a_cache_hit(routing_server: Server) -> None:
    ask = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "缓存测试：你好"}],
        "max_tokens": 6,
        "temperature": 0,
    }
    with openai.OpenAI(base_url=routing_server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        first = sdk.chat.completions.with_raw_response.create(**ask)
        second = sdk.chat.completions.with_raw_response.create(**ask)
    assert (first.headers["x-stratum-cache"], second.headers["x-stratum-cache"]) == ("miss", "hit")
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert second.parse().usage == first.parse().usage  # the answer's usage; billing is tested in gateway/


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(MOCK_UPSTREAM), "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_burst_to_a_mock_upstream_under_load_and_back(routing_server: Server, mock_upstream: int) -> None:
    server = routing_server
    server.cli("models", "add", "cloud", "--upstream", f"http://127.0.0.1:{mock_upstream}/v1")
    route = ["--backend", "tiny", "--backend", "cloud,priority=1", "--burst-queue", "1"]
    server.cli("routes", "set", "assistant", *route)

    async def load() -> list[str]:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0)

        async def one(i: int) -> str:
            # Arrivals spread over ~1 s, so the local queue builds up while requests come in.
            await asyncio.sleep(0.04 * i)
            raw = await sdk.chat.completions.with_raw_response.create(
                model="assistant",
                messages=[{"role": "user", "content": f"请写一段话 {i}"}],
                max_tokens=64,
                temperature=0.8,
            )
            backend = raw.headers["x-stratum-backend"]
            if backend == "cloud@1":  # the mock's fixed answer arrived whole
                assert raw.parse().choices[0].message.content == "Hello from the mock upstream."
            return backend

        try:
            return await asyncio.gather(*(one(i) for i in range(24)))
        finally:
            await sdk.close()

    backends = asyncio.run(load())
    assert set(backends) == {"tiny@1", "cloud@1"}, backends  # both served, nobody got a 503
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="assistant", messages=[{"role": "user", "content": "你好"}], max_tokens=4
        )
    assert raw.headers["x-stratum-backend"] == "tiny@1"  # drained: local again
    metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    bursts = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('stratum_route_bursts_total{backend="tiny@1",model="assistant"}')
    ]
    # Every burst went to the cloud; the cloud may also have taken requests the full local queue
    # turned away (saturation fails over to the next backend too).
    assert bursts and 1 <= bursts[0] <= backends.count("cloud@1"), (
        backends,
        [m for m in metrics.splitlines() if "burst" in m or "queue" in m],
    )
