"""The shared upstream pool, configurable retries with jittered backoff, and health checks."""

from __future__ import annotations

import random

import httpx
import pytest

from stratum.engine.upstream import UpstreamEngine, backoff_delay, shared_client
from stratum.errors import UpstreamError
from tests.engine.test_upstream import GOOD, _request


def test_backoff_doubles_with_jitter_within_bounds() -> None:
    rng = random.Random(1)
    for attempt, ceiling in ((1, 0.25), (2, 0.5), (3, 1.0)):
        delays = [backoff_delay(0.25, attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays}) > 100  # jittered, not a fixed schedule


async def test_engines_share_one_client_and_never_close_it() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, content=GOOD, headers={"content-type": "text/event-stream"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    first = UpstreamEngine("http://a/v1", model="m", client=client)
    second = UpstreamEngine("http://b/v1", model="m", client=client)
    for engine in (first, second):
        assert "".join([c.text async for c in engine.generate(_request())]) == "你好，世界"
        await engine.close()
    assert not client.is_closed and calls == ["http://a/v1/chat/completions", "http://b/v1/chat/completions"]
    await client.aclose()


async def test_shared_client_offers_http2() -> None:
    client = shared_client(timeout=5, http2=True)
    try:
        assert client._transport._pool._http2  # type: ignore[attr-defined]
    finally:
        await client.aclose()


@pytest.mark.parametrize("retries", [0, 3])
async def test_retry_count_is_configurable(retries: int) -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(503, json={"error": {"message": "busy"}})

    engine = UpstreamEngine(
        "http://up/v1", model="m", transport=httpx.MockTransport(handler), retries=retries, backoff_s=0.001
    )
    with pytest.raises(UpstreamError):
        [c async for c in engine.generate(_request())]
    await engine.close()
    assert len(attempts) == retries + 1


async def test_health_check_reports_reachability() -> None:
    status = {"code": 200}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models"
        if status["code"] == 0:
            raise httpx.ConnectError("refused")
        return httpx.Response(status["code"], json={"data": []})

    engine = UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler))
    assert await engine.check_health()
    status["code"] = 401  # reachable, our key is wrong: still up
    assert await engine.check_health()
    status["code"] = 503
    assert not await engine.check_health()
    status["code"] = 0
    assert not await engine.check_health()
    await engine.close()
