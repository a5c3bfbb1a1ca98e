"""Disconnects cancel generation; a saturated engine answers 503 with Retry-After; errors mid-stream."""

from __future__ import annotations

import json
import time

from stratum.engine.fake import FakeEngine
from tests.gateway.conftest import Gateway


def test_client_disconnect_cancels_generation(gateway: Gateway) -> None:
    gateway.replies.append("长" * 500)
    gateway.delay_s = 0.01
    gateway.add_model("slow")
    payload = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "写长文"}]}
    with gateway.client.stream(
        "POST", "/v1/chat/completions", json=payload, headers=gateway.headers
    ) as response:
        lines = response.iter_lines()
        next(lines)
    engine = gateway.engines["slow"]
    for _ in range(100):
        if engine.running == 0:
            break
        time.sleep(0.02)
    assert engine.running == 0
    assert engine.cancelled == 1


def test_saturated_engine_is_503_with_retry_after(gateway: Gateway) -> None:
    gateway.add_model("busy")
    gateway.client.post(
        "/v1/chat/completions",
        json={"model": "busy", "messages": [{"role": "user", "content": "warm"}]},
        headers=gateway.headers,
    )
    gateway.engines["busy"].max_running = 0
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "busy", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers=gateway.headers,
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "overloaded_error"


class _Failing(FakeEngine):
    async def _stream(self, request, reply):  # type: ignore[no-untyped-def]
        from stratum.engine.base import GenerationChunk
        from stratum.errors import UpstreamError

        yield GenerationChunk(text="半", prompt_tokens=1, completion_tokens=1)
        raise UpstreamError("upstream stream broke off", code="upstream_stream_cut")


def test_error_mid_stream_is_an_error_event_not_done(gateway: Gateway) -> None:
    gateway.add_model("flaky")
    gateway.state.pool.factory = lambda version: _Failing()
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "flaky", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers=gateway.headers,
    )
    events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_cut"
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "半"
